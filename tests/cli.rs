//! The `t5g` command line as scripts use it: outputs per the contract in DESIGN.md, and every
//! bad input ending in exactly one `error:` line with exit code 1 (runtime) or 2 (usage).

mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Output};
use t5g::gguf::GgmlType;

fn t5g(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_t5g"))
        .args(args)
        .output()
        .unwrap()
}

/// Asserts a clean failure: the exit code, and exactly one stderr line starting `error:`.
fn assert_clean_error(out: &Output, code: i32, context: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "{context}: exit code; stderr: {stderr}"
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "{context}: expected one stderr line, got {stderr:?}"
    );
    assert!(lines[0].starts_with("error: "), "{context}: {stderr:?}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("internal error"),
        "{context}: {stderr}"
    );
    stderr
}

fn csv(ids: &[u32]) -> String {
    ids.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn generate_ids_prints_the_reference_greedy_sequence() {
    for dir in fixture_dirs() {
        let reference = reference(&dir);
        let model = convert_fixture(&dir, GgmlType::F32, true);
        for case in reference["greedy"].as_array().unwrap() {
            let n = case["max_new_tokens"].to_string();
            let out = t5g(&[
                "generate",
                "-m",
                model.to_str().unwrap(),
                "--input-ids",
                &csv(&ids(&case["input_ids"])),
                "-n",
                &n,
                "--greedy",
                "--ids",
            ]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let stdout = String::from_utf8(out.stdout).unwrap();
            assert_eq!(
                stdout.trim_end(),
                csv(&ids(&case["output_ids"])),
                "{}",
                name(&dir)
            );
        }
    }
}

#[test]
fn logits_json_matches_the_reference() {
    let dir = &fixture_dirs()[0];
    let reference = reference(dir);
    let model = convert_fixture(dir, GgmlType::F32, true);
    let case = &reference["cases"][1];
    let out = t5g(&[
        "logits",
        "-m",
        model.to_str().unwrap(),
        "--input-ids",
        &csv(&ids(&case["input_ids"])),
        "--decoder-ids",
        &csv(&ids(&case["decoder_input_ids"])),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let flat = |v: &serde_json::Value| matrix(v).concat();
    let d = max_abs_diff(&flat(&json["logits"]), &matrix(&case["logits"]));
    assert!(d <= 1e-3, "logits differ by {d}");
    let d = max_abs_diff(
        &flat(&json["encoder_last_hidden_state"]),
        &matrix(&case["encoder_last_hidden_state"]),
    );
    assert!(d <= 1e-3, "encoder states differ by {d}");
}

#[test]
fn info_describes_the_model() {
    for dir in fixture_dirs() {
        let model = convert_fixture(&dir, GgmlType::Q8_0, true);
        let out = t5g(&["info", model.to_str().unwrap()]);
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        let family = reference(&dir)["family"].as_str().unwrap().to_string();
        assert!(text.contains(&format!("family:       {family}")), "{text}");
        assert!(text.contains("q8_0"), "{text}");
        assert!(text.contains("tokenizer:"), "{text}");
        assert!(text.contains("attention:    encoder f32"), "{text}");
        if family == "t5gemma2" {
            assert!(
                text.contains("vision-tower/projector tensors skipped"),
                "{text}"
            );
        }
    }
}

#[test]
fn bad_arguments_are_usage_errors() {
    let dir = &fixture_dirs()[0];
    let model = convert_fixture(dir, GgmlType::Q8_0, true);
    let m = model.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &["generate", "-m", m, "--input-ids", "5,x,7"],
            "not a token id",
        ),
        (&["generate", "-m", m, "--input-ids", ""], "no token ids"),
        (
            &["generate", "-m", m, "--input-ids", "5,-1"],
            "not a token id",
        ),
        (&["generate", "-m", m, "--input-ids", "5", "-n", "0"], "-n"),
        (
            &["generate", "-m", m, "--input-ids", "5", "-n", "100000000"],
            "-n",
        ),
        (
            &["generate", "-m", m, "--input-ids", "5", "-t", "0"],
            "threads",
        ),
        (
            &["generate", "-m", m, "--input-ids", "5", "--no-such-flag"],
            "no-such-flag",
        ),
        (&["generate", "--input-ids", "5"], "--model"),
        (&["convert", "x", "-o", "y.gguf", "--type", "q3_k"], "q3_k"),
        (&["frobnicate"], "frobnicate"),
    ];
    for (args, needle) in cases {
        let err = assert_clean_error(&t5g(args), 2, &format!("{args:?}"));
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn runtime_failures_name_what_is_at_fault() {
    let dir = &fixture_dirs()[0];
    let model = convert_fixture(dir, GgmlType::Q8_0, true);
    let m = model.to_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing.gguf");
    let not_gguf = tmp.path().join("notes.gguf");
    std::fs::write(&not_gguf, "hello, I am text").unwrap();
    let out_path = tmp.path().join("o.gguf");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["info", missing.to_str().unwrap()], "missing.gguf"),
        (vec!["info", tmp.path().to_str().unwrap()], "directory"),
        (vec!["info", not_gguf.to_str().unwrap()], "not a GGUF file"),
        (
            vec!["generate", "-m", m, "--input-ids", "5,999999"],
            "out of range",
        ),
        (
            vec![
                "logits",
                "-m",
                m,
                "--input-ids",
                "5",
                "--decoder-ids",
                "2,4294967295",
                "--json",
            ],
            "out of range",
        ),
        (
            vec![
                "convert",
                tmp.path().to_str().unwrap(),
                "-o",
                out_path.to_str().unwrap(),
            ],
            "config.json",
        ),
    ];
    for (args, needle) in cases {
        let err = assert_clean_error(&t5g(&args), 1, &format!("{args:?}"));
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    assert!(
        !tmp.path().join("o.gguf").exists(),
        "a failed conversion left a file"
    );
}

/// Section boundaries of a GGUF file: where the header, each metadata entry, the tensor infos
/// and each tensor's data start.
fn interesting_offsets(path: &Path) -> Vec<usize> {
    let file = t5g::gguf::GgufFile::open(path).unwrap();
    let mut offsets = vec![0, 1, 4, 8, 16, 24, file.data_start() - 1, file.data_start()];
    for t in file.tensors() {
        offsets.extend([t.range.start, t.range.start + 1, t.range.end - 1]);
    }
    let size = file.file_size();
    offsets.extend((1..64).map(|i| i * file.data_start() / 64));
    offsets.extend((1..16).map(|i| i * size / 16));
    offsets.push(size - 1);
    offsets.sort_unstable();
    offsets.dedup();
    offsets.retain(|&o| o < size);
    offsets
}

#[test]
fn truncated_model_files_fail_cleanly_at_every_section() {
    let dir = &fixture_dirs()[0];
    let model = convert_fixture(dir, GgmlType::Q4_0, true);
    let bytes = std::fs::read(&model).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cut = tmp.path().join("cut.gguf");
    let offsets = interesting_offsets(&model);
    assert!(offsets.len() > 40);
    for at in offsets {
        std::fs::write(&cut, &bytes[..at]).unwrap();
        for args in [
            vec!["info", cut.to_str().unwrap()],
            vec![
                "generate",
                "-m",
                cut.to_str().unwrap(),
                "--input-ids",
                "5,6",
                "-n",
                "2",
            ],
        ] {
            assert_clean_error(
                &t5g(&args),
                1,
                &format!("truncated at {at} of {}", bytes.len()),
            );
        }
    }
}

#[test]
fn corrupted_headers_never_panic() {
    let dir = &fixture_dirs()[0];
    let model = convert_fixture(dir, GgmlType::Q8_0, true);
    let bytes = std::fs::read(&model).unwrap();
    let data_start = t5g::gguf::GgufFile::open(&model).unwrap().data_start();
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.gguf");
    let mut failures = 0;
    // Every 7th header byte, set to values that break lengths, counts, types and ids.
    for at in (0..data_start).step_by(7) {
        for value in [0xffu8, 0x7f, 0x00] {
            let mut corrupted = bytes.clone();
            if corrupted[at] == value {
                continue;
            }
            corrupted[at] = value;
            std::fs::write(&bad, &corrupted).unwrap();
            let out = t5g(&[
                "generate",
                "-m",
                bad.to_str().unwrap(),
                "--input-ids",
                "5,6",
                "-n",
                "2",
            ]);
            match out.status.code() {
                Some(0) => {}
                Some(1) => {
                    assert_clean_error(&out, 1, &format!("byte {at} = {value:#x}"));
                    failures += 1;
                }
                other => panic!(
                    "byte {at} = {value:#x}: exit {other:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                ),
            }
        }
    }
    assert!(failures > 0);
}

#[test]
fn nan_block_scales_are_reported_not_printed_as_text() {
    let dir = fixture_dirs()
        .into_iter()
        .find(|d| name(d) == "t5gemma_balanced")
        .unwrap();
    let model = convert_fixture(&dir, GgmlType::Q8_0, true);
    let file = t5g::gguf::GgufFile::open(&model).unwrap();
    // Row 0 of the tied LM head: its logit is NaN at every step. (A NaN inside a hidden
    // layer can vanish: activation quantization maps NaN to 0.)
    let at = file
        .tensor_info("dec.token_embd.weight")
        .unwrap()
        .range
        .start;
    drop(file);
    let mut bytes = std::fs::read(&model).unwrap();
    bytes[at..at + 2].copy_from_slice(&half::f16::NAN.to_le_bytes());
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("nan.gguf");
    std::fs::write(&bad, &bytes).unwrap();
    let err = assert_clean_error(
        &t5g(&["info", bad.to_str().unwrap(), "--verify"]),
        1,
        "info --verify",
    );
    assert!(err.contains("dec.token_embd.weight"), "{err}");
    let err = assert_clean_error(
        &t5g(&[
            "generate",
            "-m",
            bad.to_str().unwrap(),
            "--input-ids",
            "5,6,7",
            "-n",
            "4",
            "--ids",
        ]),
        1,
        "generate",
    );
    assert!(err.contains("NaN"), "{err}");
}

#[test]
fn every_kernel_level_and_thread_count_gives_the_same_greedy_output() {
    for dir in fixture_dirs() {
        for ty in [GgmlType::Q4_0, GgmlType::Q8_0] {
            let model = convert_fixture(&dir, ty, true);
            for attention in ["f32", "int8"] {
                same_output_at_every_level_and_thread_count(&dir, ty, &model, attention);
            }
        }
    }
}

/// `generate` at every supported kernel level with 1 and 2 threads, with the encoder's
/// attention in `attention` (`T5G_ATTENTION`): one greedy output for all of them.
fn same_output_at_every_level_and_thread_count(
    dir: &std::path::Path,
    ty: GgmlType,
    model: &std::path::Path,
    attention: &str,
) {
    let input = "5,9,33,100,7,250,11,19,402,8,77,301,44,12,6,93,120,17";
    let mut outputs = Vec::new();
    for level in t5g::kernels::supported_levels() {
        for threads in ["1", "2"] {
            let out = Command::new(env!("CARGO_BIN_EXE_t5g"))
                .args(["generate", "-m", model.to_str().unwrap()])
                .args(["--input-ids", input, "-n", "10", "--ids", "-t", threads])
                .env("T5G_KERNEL", level.name())
                .env("T5G_ATTENTION", attention)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let ids = String::from_utf8(out.stdout).unwrap();
            outputs.push((level.name(), threads, ids));
        }
    }
    for (level, threads, ids) in &outputs {
        assert_eq!(
            ids,
            &outputs[0].2,
            "{} {ty}, {attention} attention: {level} with {threads} threads",
            name(dir)
        );
    }
}

#[test]
fn unknown_attention_precision_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_t5g"))
        .args(["info", "x.gguf"])
        .env("T5G_ATTENTION", "int4")
        .output()
        .unwrap();
    let err = assert_clean_error(&out, 2, "T5G_ATTENTION");
    assert!(err.contains("T5G_ATTENTION=int4"), "{err}");
}

#[test]
fn unsupported_kernel_level_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_t5g"))
        .args(["info", "x.gguf"])
        .env("T5G_KERNEL", "sve9000")
        .output()
        .unwrap();
    let err = assert_clean_error(&out, 2, "T5G_KERNEL");
    assert!(err.contains("T5G_KERNEL"), "{err}");
}
