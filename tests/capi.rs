//! The C ABI: the header matches the exports, and the example C program — linked against the
//! cdylib — agrees with the CLI, shares one model across four threads, reports errors as
//! messages, and runs clean under valgrind.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use t5g::gguf::GgmlType;

/// `target/<profile>/deps/`, where this `cargo test` left the `libt5g.so` it built from the
/// sources under test: the library is this test's dependency, and cargo builds it with every
/// crate type of `[lib]` (rlib and cdylib) before the test. (A separate `cargo build --lib`
/// here took ~100 s in CI: the dev profile's dependencies are not the test profile's.)
fn lib_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_t5g"))
        .parent()
        .unwrap()
        .join("deps");
    assert!(
        dir.join("libt5g.so").exists(),
        "no libt5g.so in {} (crate-type must include cdylib)",
        dir.display()
    );
    dir
}

/// Every `t5g_name(params)` call shape in `text`: names with their parameter counts.
fn signatures(text: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices("t5g_") {
        let rest = &text[i..];
        let name_len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if !rest[name_len..].starts_with('(')
            || (i > 0 && text.as_bytes()[i - 1].is_ascii_alphanumeric())
        {
            continue;
        }
        let close = rest.find(')').unwrap();
        let params = rest[name_len + 1..close].trim();
        let count = params
            .split(',')
            .filter(|p| !p.trim().is_empty() && p.trim() != "void")
            .count();
        out.push((rest[..name_len].to_string(), count));
    }
    out.sort();
    out.dedup();
    out
}

#[test]
fn header_declares_exactly_the_exported_functions() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let header = std::fs::read_to_string(root.join("include/t5g.h")).unwrap();
    let rust = std::fs::read_to_string(root.join("src/capi.rs")).unwrap();
    // Declarations only: drop comments and the callback typedef.
    let declarations: String = header
        .lines()
        .map(str::trim_start)
        .filter(|l| !l.starts_with("/*") && !l.starts_with('*') && !l.starts_with("typedef"))
        .collect::<Vec<_>>()
        .join(" ");
    let exported: String = rust
        .split("extern \"C\" fn ")
        .skip(1)
        .map(|rest| &rest[..rest.find('{').unwrap()])
        .collect::<Vec<_>>()
        .join(" ");
    assert_eq!(
        signatures(&declarations),
        signatures(&exported),
        "include/t5g.h and src/capi.rs disagree"
    );
    assert!(signatures(&exported).len() >= 7);
}

fn build_example(dir: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib_dir = lib_dir();
    let exe = dir.join("example");
    let status = Command::new("gcc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O1", "-g"])
        .arg(root.join("examples/c/example.c"))
        .arg("-I")
        .arg(root.join("include"))
        .arg("-L")
        .arg(&lib_dir)
        .args(["-lt5g", "-lpthread", "-o"])
        .arg(&exe)
        .status()
        .expect("gcc runs");
    assert!(status.success(), "gcc failed");
    exe
}

fn run_example(exe: &Path, args: &[&str], under_valgrind: bool) -> std::process::Output {
    let mut cmd = if under_valgrind {
        let mut c = Command::new("valgrind");
        c.args([
            "--leak-check=full",
            "--errors-for-leak-kinds=definite",
            "--error-exitcode=99",
            "-q",
        ])
        .arg(exe);
        c
    } else {
        Command::new(exe)
    };
    cmd.args(args)
        .env("LD_LIBRARY_PATH", lib_dir())
        .output()
        .unwrap()
}

#[test]
fn c_example_agrees_with_the_cli_and_shares_a_model_across_threads() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = build_example(tmp.path());
    for dir in fixture_dirs() {
        let reference = reference(&dir);
        let model = convert_fixture(&dir, GgmlType::Q8_0, true);
        let corrupt = tmp.path().join("corrupt.gguf");
        let bytes = std::fs::read(&model).unwrap();
        std::fs::write(&corrupt, &bytes[..bytes.len() / 3]).unwrap();
        let input: Vec<String> = ids(&reference["greedy"][0]["input_ids"])
            .iter()
            .map(|i| i.to_string())
            .collect();
        let input = input.join(",");
        let out = run_example(
            &exe,
            &[
                model.to_str().unwrap(),
                &input,
                "12",
                corrupt.to_str().unwrap(),
                "8",
            ],
            false,
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}: {stdout}\n{}",
            name(&dir),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("4 x 8 calls, 0 mismatches"), "{stdout}");
        let cli = Command::new(env!("CARGO_BIN_EXE_t5g"))
            .args([
                "generate",
                "-m",
                model.to_str().unwrap(),
                "--input-ids",
                &input,
                "-n",
                "12",
                "--ids",
            ])
            .output()
            .unwrap();
        assert_eq!(
            stdout.lines().next().unwrap(),
            String::from_utf8_lossy(&cli.stdout).trim_end(),
            "{}",
            name(&dir)
        );
    }
}

#[test]
fn c_example_is_clean_under_valgrind() {
    if Command::new("valgrind").arg("--version").output().is_err() {
        eprintln!("valgrind not installed: skipped (CI installs it)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let exe = build_example(tmp.path());
    let dir = fixture_dirs()
        .into_iter()
        .find(|d| name(d) == "t5gemma_balanced")
        .unwrap();
    let model = convert_fixture(&dir, GgmlType::Q4_0, true);
    let out = run_example(
        &exe,
        &[model.to_str().unwrap(), "5,6,7,8", "4", "/dev/null", "1"],
        true,
    );
    assert!(
        out.status.success(),
        "valgrind exit {:?}\n{}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
