//! Requests too big for the machine are refused up front with the figures, instead of
//! allocating until the kernel kills the process: absurd `max_new_tokens × beams`, inputs past
//! a million tokens, and (through the CLI) a request larger than the memory available.

mod common;

use common::{convert_fixture, fixture_dirs};
use std::process::Command;
use t5g::generate::{generate, BeamParams, Flow, GenerateOptions, Strategy};
use t5g::gguf::GgmlType;
use t5g::model::{Model, MAX_INPUT_TOKENS};

fn tiny_model() -> (tempfile::TempPath, Model) {
    let dir = &fixture_dirs()[0];
    let path = convert_fixture(dir, GgmlType::F32, true);
    let model = Model::load(&path).unwrap();
    (path, model)
}

#[test]
fn absurd_generation_lengths_are_refused_before_allocating() {
    let (_path, model) = tiny_model();
    let opts = GenerateOptions {
        max_new_tokens: 1 << 40,
        strategy: Strategy::Beam(BeamParams {
            beams: 64,
            length_penalty: 1.0,
            early_stopping: false,
        }),
        ..Default::default()
    };
    let err = generate(&model, &[5, 6, 7], &opts, &mut |_| Flow::Continue)
        .unwrap_err()
        .to_string();
    if t5g::model::available_memory().is_some() {
        assert!(err.contains("GiB available"), "{err}");
        assert!(err.contains("fewer beams or -n"), "{err}");
    }
    // The estimate grows with every factor the message names.
    let base = model.request_bytes(100, 100, 1);
    assert!(model.request_bytes(200, 100, 1) > base);
    assert!(model.request_bytes(100, 200, 1) > base);
    assert!(model.request_bytes(100, 100, 4) > base);
    assert!(model.request_bytes(usize::MAX, usize::MAX, usize::MAX) > u128::from(u64::MAX));
}

#[test]
fn inputs_past_a_million_tokens_are_refused() {
    let (_path, model) = tiny_model();
    let ids = vec![5u32; MAX_INPUT_TOKENS + 1];
    let err = model.encode(&ids).unwrap_err().to_string();
    assert!(err.contains("1048577 tokens"), "{err}");
    let err = generate(&model, &ids, &GenerateOptions::default(), &mut |_| {
        Flow::Continue
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("at most 1048576"), "{err}");
}

#[test]
fn cli_refuses_a_request_larger_than_available_memory() {
    let (path, _model) = tiny_model();
    let out = Command::new(env!("CARGO_BIN_EXE_t5g"))
        .args([
            "generate",
            "-m",
            path.to_str().unwrap(),
            "--input-ids",
            "5,6,7",
        ])
        .args(["-n", "64", "--ids"])
        .env("T5G_MEM_AVAILABLE", "1024")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("GiB available") && stderr.contains("-n"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
