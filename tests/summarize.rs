//! `t5g summarize` end to end on the tiny fixture with a tokenizer: file and stdin agree,
//! beam search and seeded sampling repeat themselves, long documents are chunked with bounded
//! memory, and batch mode reports bad lines and goes on.

mod common;

use common::*;
use std::io::Write;
use std::process::{Command, Output, Stdio};
use t5g::gguf::GgmlType;

fn model() -> tempfile::TempPath {
    let dir = fixture_dirs()
        .into_iter()
        .find(|d| name(d) == "t5gemma_balanced")
        .unwrap();
    convert_fixture(&dir, GgmlType::Q8_0, true)
}

fn t5g(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_t5g"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        pipe.write_all(bytes).unwrap();
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

const DOC: &str = "The committee met on Tuesday to review the budget. Spending on roads rose by a \
    tenth, while the parks department asked for two new staff.\n\nAfter a long debate the plan \
    passed with one vote against. The next meeting is in March.";

#[test]
fn file_and_stdin_give_the_same_summary() {
    let m = model();
    let tmp = tempfile::tempdir().unwrap();
    let doc = tmp.path().join("doc.txt");
    std::fs::write(&doc, DOC).unwrap();
    let from_file = ok(&t5g(
        &[
            "summarize",
            doc.to_str().unwrap(),
            "-m",
            m.to_str().unwrap(),
            "-n",
            "12",
        ],
        None,
    ));
    let from_stdin = ok(&t5g(
        &["summarize", "-", "-m", m.to_str().unwrap(), "-n", "12"],
        Some(DOC.as_bytes()),
    ));
    assert!(!from_file.trim().is_empty());
    assert_eq!(from_file, from_stdin);
    let json: serde_json::Value = serde_json::from_str(&ok(&t5g(
        &[
            "summarize",
            doc.to_str().unwrap(),
            "-m",
            m.to_str().unwrap(),
            "-n",
            "12",
            "--json",
        ],
        None,
    )))
    .unwrap();
    assert_eq!(json["summary"].as_str().unwrap(), from_file.trim());
    assert!(json["input_tokens"].as_u64().unwrap() > 20);
    assert!(json["output_tokens"].as_u64().unwrap() <= 12);
    assert!(json["decode_seconds"].as_f64().unwrap() >= 0.0);
}

#[test]
fn beam_search_and_seeded_sampling_are_deterministic() {
    let m = model();
    let m = m.to_str().unwrap();
    for flags in [
        vec!["--beams", "4"],
        vec![
            "--beams",
            "3",
            "--length-penalty",
            "0.6",
            "--no-early-stopping",
        ],
        vec![
            "--temp", "0.9", "--top-k", "40", "--top-p", "0.95", "--seed", "11",
        ],
        vec![
            "--temp",
            "1.2",
            "--min-p",
            "0.05",
            "--seed",
            "5",
            "--repetition-penalty",
            "1.3",
            "--no-repeat-ngram-size",
            "2",
        ],
    ] {
        let args: Vec<&str> = ["summarize", "-", "-m", m, "-n", "16"]
            .into_iter()
            .chain(flags.iter().copied())
            .collect();
        let a = ok(&t5g(&args, Some(DOC.as_bytes())));
        let b = ok(&t5g(&args, Some(DOC.as_bytes())));
        assert_eq!(a, b, "{flags:?}");
    }
    let seeded = |seed: &str| {
        ok(&t5g(
            &[
                "summarize",
                "-",
                "-m",
                m,
                "-n",
                "24",
                "--temp",
                "1.5",
                "--seed",
                seed,
            ],
            Some(DOC.as_bytes()),
        ))
    };
    assert!(
        (1..6).any(|s| seeded(&s.to_string()) != seeded("0")),
        "the seed changes nothing"
    );
}

#[test]
fn long_documents_are_chunked_with_bounded_memory() {
    let m = model();
    // ~10x the input budget of 256 tokens.
    let long: String = (0..60)
        .map(|i| format!("Paragraph {i}. {DOC}\n\n"))
        .collect();
    let out = t5g(
        &[
            "summarize",
            "-",
            "-m",
            m.to_str().unwrap(),
            "-n",
            "8",
            "--max-input-tokens",
            "256",
            "--json",
        ],
        Some(long.as_bytes()),
    );
    let json: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    assert!(json["input_tokens"].as_u64().unwrap() > 2560, "{json}");
    assert!(json["chunks"].as_u64().unwrap() >= 10, "{json}");
    assert!(json["rounds"].as_u64().unwrap() >= 2, "{json}");
}

#[test]
fn batch_mode_reports_bad_lines_and_goes_on() {
    let m = model();
    let input = format!(
        "{}\n{{not json\n{}\n[1,2]\n{}\n{}\n",
        serde_json::json!({"id": "a", "text": DOC}),
        serde_json::json!({"id": 2, "text": "Short text about cats."}),
        serde_json::json!({"id": "no-text"}),
        serde_json::json!({"id": "empty", "text": "   "}),
    );
    let out = ok(&t5g(
        &[
            "summarize",
            "-m",
            m.to_str().unwrap(),
            "-n",
            "6",
            "--jsonl",
            "-",
        ],
        Some(input.as_bytes()),
    ));
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6, "{out}");
    assert_eq!(lines[0]["id"], "a");
    assert!(lines[0]["summary"].is_string());
    assert!(lines[1]["error"].as_str().unwrap().contains("not JSON"));
    assert_eq!(lines[1]["line"], 2);
    assert_eq!(lines[2]["id"], 2);
    assert!(lines[2]["summary"].is_string());
    assert!(lines[3]["error"].as_str().unwrap().contains("object"));
    assert!(lines[4]["error"].as_str().unwrap().contains("text"));
    assert!(lines[5]["error"].as_str().unwrap().contains("empty"));
}

#[test]
fn summarize_errors_are_one_line() {
    let m = model();
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.txt");
    std::fs::write(&bad, [0x66, 0x6f, 0xff, 0xfe]).unwrap();
    let ids_only = convert_fixture(
        &fixture_dirs()
            .into_iter()
            .find(|d| name(d) == "t5gemma_unbalanced")
            .unwrap(),
        GgmlType::Q8_0,
        true,
    );
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (
            vec![
                "summarize",
                bad.to_str().unwrap(),
                "-m",
                m.to_str().unwrap(),
            ],
            1,
            "not UTF-8",
        ),
        (
            vec!["summarize", "-", "-m", m.to_str().unwrap()],
            1,
            "empty",
        ),
        (
            vec![
                "summarize",
                tmp.path().to_str().unwrap(),
                "-m",
                m.to_str().unwrap(),
            ],
            1,
            "directory",
        ),
        (
            vec!["summarize", "-", "-m", ids_only.to_str().unwrap()],
            1,
            "no tokenizer",
        ),
        (
            vec!["summarize", "-", "-m", m.to_str().unwrap(), "--beams", "0"],
            2,
            "beams",
        ),
        (
            vec!["summarize", "-", "-m", m.to_str().unwrap(), "--temp=0"],
            2,
            "temperature",
        ),
        (
            vec![
                "summarize",
                "-",
                "-m",
                m.to_str().unwrap(),
                "--max-input-tokens",
                "5",
            ],
            2,
            "max-input-tokens",
        ),
        (
            vec![
                "summarize",
                "-",
                "-m",
                m.to_str().unwrap(),
                "--length",
                "huge",
            ],
            2,
            "huge",
        ),
    ];
    for (args, code, needle) in cases {
        let out = t5g(&args, Some(b""));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(needle),
            "{args:?}: {stderr}"
        );
    }
}
