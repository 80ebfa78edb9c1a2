//! The `t5g-convert` command line: exit codes and the one-line `error:` contract.

use std::path::Path;
use std::process::Command;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_t5g-convert"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn one_error_line(stderr: &str) {
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &[][..],
        &["dir"],
        &["dir", "-o", "x.gguf", "--type", "q5_1"],
        &["dir", "-o", "x.gguf", "--encoder-window", "wide"],
        &["dir", "-o", "x.gguf", "--bogus"],
    ] {
        let (code, _, stderr) = run(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        one_error_line(&stderr);
    }
    let (code, stdout, _) = run(&["--help"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("--encoder-window"));
}

#[test]
fn runtime_errors_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.gguf");
    let (code, _, stderr) = run(&["/nonexistent/checkpoint", "-o", out.to_str().unwrap()]);
    assert_eq!(code, 1);
    one_error_line(&stderr);
    assert!(stderr.contains("/nonexistent/checkpoint"), "{stderr}");

    std::fs::write(dir.path().join("config.json"), r#"{"model_type": "bert"}"#).unwrap();
    let (code, _, stderr) = run(&[dir.path().to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(code, 1);
    one_error_line(&stderr);
    assert!(stderr.contains("bert"), "{stderr}");
    assert!(!out.exists());
}

/// The reference fixtures (tests/fixtures, produced by tools/make_reference.py) convert.
#[test]
fn fixtures_convert() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    let names = [
        "t5gemma_balanced",
        "t5gemma_unbalanced",
        "t5gemma_sharded",
        "t5gemma2_tiny",
        "t5gemma2_gqa1",
    ];
    let out_dir = tempfile::tempdir().unwrap();
    for name in names {
        let input = fixtures.join(name);
        if !input.join("config.json").exists() {
            eprintln!("skipping {name}: no fixture at {}", input.display());
            continue;
        }
        for ty in ["f32", "q4_0"] {
            let out = out_dir.path().join(format!("{name}-{ty}.gguf"));
            let (code, stdout, stderr) = run(&[
                input.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
                "--type",
                ty,
                "--no-progress",
            ]);
            assert_eq!(code, 0, "{name} {ty}: {stderr}");
            assert!(stdout.starts_with("wrote "), "{stdout}");
            let f = t5g::gguf::GgufFile::open(&out).unwrap();
            assert!(f
                .get_str("general.architecture")
                .unwrap()
                .starts_with("t5gemma"));
        }
    }
}
