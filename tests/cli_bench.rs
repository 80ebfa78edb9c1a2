//! `t5g bench` as scripts use it: one JSON object with the contract's keys, synthetic models
//! cached by name and removable, and usage errors as one `error:` line with exit code 2.

mod common;

use common::*;
use serde_json::Value;
use std::process::{Command, Output};
use t5g::gguf::GgmlType;

fn t5g(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_t5g"))
        .args(args)
        .output()
        .unwrap()
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(stdout.lines().count(), 1, "one JSON object on one line");
    serde_json::from_str(&stdout).unwrap()
}

fn check_contract(v: &Value, input: u64, new: u64) {
    for key in ["encode_tokens_per_s", "decode_tokens_per_s"] {
        assert!(v[key].as_f64().unwrap() > 0.0, "{key}: {v}");
    }
    assert_eq!(v["threads"].as_u64(), Some(1));
    assert!(v.get("peak_rss_bytes").is_some());
    assert_eq!(v["input_tokens"].as_u64(), Some(input));
    assert_eq!(v["new_tokens"].as_u64(), Some(new));
    assert!(v["decode_weight_bytes_per_token"].as_u64().unwrap() > 0);
}

#[test]
fn bench_json_on_a_model_file() {
    let dir = &fixture_dirs()[0];
    let model = convert_fixture(dir, GgmlType::Q8_0, false);
    let out = t5g(&[
        "bench",
        "-m",
        model.to_str().unwrap(),
        "--input-tokens",
        "8",
        "--new-tokens",
        "3",
        "-t",
        "1",
        "--no-ceilings",
        "--json",
    ]);
    let v = json(&out);
    check_contract(&v, 8, 3);
    assert_eq!(v["type"], "q8_0");
    assert!(v["preset"].is_null());
    // Q8_0 files attend in f32 unless told otherwise; the override is reported.
    assert_eq!(v["encoder_attention"], "f32");
    let out = Command::new(env!("CARGO_BIN_EXE_t5g"))
        .args([
            "bench",
            "-m",
            model.to_str().unwrap(),
            "--input-tokens",
            "40",
        ])
        .args(["--new-tokens", "2", "-t", "1", "--no-ceilings", "--json"])
        .env("T5G_ATTENTION", "int8")
        .output()
        .unwrap();
    assert_eq!(json(&out)["encoder_attention"], "int8");
}

#[test]
fn bench_synthetic_is_cached_and_removable() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    let args = [
        "bench",
        "--synthetic",
        "t5gemma-s-s",
        "--type",
        "q4_0",
        "--layers",
        "1",
        "--synthetic-dir",
        dir,
    ];
    let run = |extra: &[&str]| {
        let mut a = args.to_vec();
        a.extend_from_slice(extra);
        t5g(&a)
    };
    let quick = [
        "--input-tokens",
        "4",
        "--new-tokens",
        "2",
        "-t",
        "1",
        "--no-ceilings",
        "--json",
    ];
    let v = json(&run(&quick));
    check_contract(&v, 4, 2);
    assert_eq!(v["preset"], "t5gemma-s-s");
    assert_eq!(v["family"], "t5gemma");
    let files: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert_eq!(files.len(), 1, "one cached file");
    let cached = files[0].as_ref().unwrap().path();
    let modified = std::fs::metadata(&cached).unwrap().modified().unwrap();
    json(&run(&quick));
    assert_eq!(
        std::fs::metadata(&cached).unwrap().modified().unwrap(),
        modified,
        "a second run reuses the cached file"
    );
    let out = run(&["--remove-synthetic"]);
    assert!(out.status.success());
    assert!(!cached.exists());
}

#[test]
fn bench_usage_errors() {
    for (args, what) in [
        (vec!["bench"], "neither -m nor --synthetic"),
        (
            vec!["bench", "-m", "x.gguf", "--synthetic", "t5gemma-s-s"],
            "both",
        ),
        (
            vec!["bench", "--synthetic", "t5gemma-7b-7b"],
            "unknown preset",
        ),
        (
            vec!["bench", "--synthetic", "t5gemma-s-s", "--type", "q5_1"],
            "bad type",
        ),
        (
            vec!["bench", "--synthetic", "t5gemma-s-s", "--new-tokens", "1"],
            "too few new tokens",
        ),
        (
            vec!["bench", "--synthetic", "t5gemma-s-s", "--input-tokens", "0"],
            "no input",
        ),
        (
            vec!["bench", "-m", "x.gguf", "--layers", "2"],
            "--layers without --synthetic",
        ),
        (
            vec!["bench", "--synthetic", "t5gemma-s-s", "-t", "0"],
            "zero threads",
        ),
        (
            vec!["bench", "--synthetic", "t5gemma-s-s", "--warmup", "101"],
            "too many warm-up passes",
        ),
    ] {
        let out = t5g(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{what}: {stderr}");
        assert!(stderr.starts_with("error: "), "{what}: {stderr}");
    }
    let out = t5g(&["bench", "-m", "/nonexistent/model.gguf", "--no-ceilings"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/model.gguf"));
}
