//! Replays the fuzz seeds (`fuzz/seeds/**`) and every input that once crashed a fuzz target
//! (`tests/fuzz_regressions/**`) through the same code the fuzz targets run, so the normal
//! test suite — and CI, without nightly or libFuzzer — keeps them fixed. Takes milliseconds.
//!
//! `cargo test --test fuzz_replay -- --ignored regenerate_fuzz_seeds` rewrites the GGUF seeds
//! from the sample files in `tests/gguf_builder`.

mod gguf_builder;

use gguf_builder::exercise::exercise_gguf;
use gguf_builder::exercise_convert::exercise_convert;
use gguf_builder::exercise_text::{exercise_sentencepiece, exercise_tokenizer};
use gguf_builder::*;
use std::path::{Path, PathBuf};
use t5g::gguf::{GgmlType, MetaValue, ValueType};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every regular file under `dir`, sorted, skipping documentation.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_none_or(|e| e != "md") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The target a seed or crasher belongs to: the name of its directory under
/// `fuzz/seeds/` or `tests/fuzz_regressions/`.
fn target_of(base: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(base).unwrap();
    rel.components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy()
        .into_owned()
}

/// Runs `file` through its target's exercise function; `None` for targets this crate does not
/// replay yet (their owners add an arm here when they add the target).
fn replay(target: &str, file: &Path) -> Option<bool> {
    let bytes = std::fs::read(file).unwrap();
    match target {
        "gguf_reader" => Some(exercise_gguf(&bytes)),
        "safetensors_config" => Some(exercise_convert(&bytes)),
        "sentencepiece_model" => Some(exercise_sentencepiece(&bytes)),
        "tokenizer" => Some(exercise_tokenizer(&bytes)),
        _ => None,
    }
}

#[test]
fn fuzz_seeds_replay() {
    let base = root().join("fuzz/seeds");
    let files = files_under(&base);
    let mut accepted = 0;
    for file in &files {
        let target = target_of(&base, file);
        let ok = replay(&target, file);
        // Seeds are valid files: a seed the reader refuses is a seed that teaches nothing.
        assert_eq!(ok, Some(true), "seed {} is not accepted", file.display());
        accepted += 1;
    }
    assert!(
        accepted >= 5 + 5 + 2 + 5,
        "expected the seeds of every target under {}",
        base.display()
    );
}

#[test]
fn fuzz_regressions_replay() {
    let base = root().join("tests/fuzz_regressions");
    for file in files_under(&base) {
        // Reaching the end without a panic is the test; most crashers are refused, some are
        // valid files that once tripped an invariant downstream of parsing.
        let target = target_of(&base, &file);
        let _ = replay(&target, &file);
    }
}

/// Replays a local, gitignored `fuzz/corpus/**` (what `tools/fuzz.sh` grew) without nightly:
/// `cargo test --test fuzz_replay -- --ignored --nocapture replay_local_corpus`.
#[test]
#[ignore = "needs a local fuzz/corpus"]
fn replay_local_corpus() {
    let base = root().join("fuzz/corpus");
    let (mut total, mut accepted) = (0, 0);
    for file in files_under(&base) {
        total += 1;
        accepted += usize::from(replay(&target_of(&base, &file), &file) == Some(true));
    }
    println!("replayed {total} corpus files, {accepted} accepted");
}

/// The seed files: small, valid, and together covering every value type, every tensor type,
/// nesting, an empty file and version 2.
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut seeds = vec![("all_value_types", all_types_file())];

    let mut b = Builder::new();
    let n = 12;
    b.meta("general.architecture", MetaValue::String("t5gemma".into()))
        .meta("tokenizer.ggml.model", MetaValue::String("llama".into()))
        .meta(
            "tokenizer.ggml.tokens",
            MetaValue::string_array((0..n).map(|i| format!("▁t{i}"))),
        )
        .meta(
            "tokenizer.ggml.scores",
            MetaValue::f32_array((0..n).map(|i| -(i as f32))),
        )
        .meta(
            "tokenizer.ggml.token_type",
            MetaValue::i32_array((0..n).map(|i| 1 + i % 6)),
        )
        .meta("tokenizer.ggml.add_bos_token", MetaValue::Bool(true))
        .meta("t5gemma.encoder.block_count", MetaValue::U32(1))
        .meta(
            "t5gemma.encoder.attention.layer_norm_rms_epsilon",
            MetaValue::F32(1e-6),
        )
        .tensor("token_embd.weight", GgmlType::Q8_0, &[32, 4])
        .tensor("enc.blk.0.attn_q.weight", GgmlType::Q4_0, &[32, 2])
        .tensor("enc.output_norm.weight", GgmlType::F32, &[32]);
    seeds.push(("tiny_model", b.bytes()));

    let mut b = Builder::new();
    b.tensor("k.q4k", GgmlType::Q4K, &[256])
        .tensor("k.q6k", GgmlType::Q6K, &[256])
        .tensor("k.bf16", GgmlType::BF16, &[2, 1, 2, 3])
        .tensor("k.f16", GgmlType::F16, &[4, 2, 1]);
    seeds.push(("all_tensor_types", b.bytes()));

    seeds.push(("empty", Builder::new().bytes()));

    let mut b = Builder::new();
    b.meta(
        "nested",
        MetaValue::Array(
            ValueType::Array,
            vec![
                MetaValue::Array(
                    ValueType::Array,
                    vec![MetaValue::string_array(["a", ""]), MetaValue::i32_array([])],
                ),
                MetaValue::Array(ValueType::Array, vec![]),
            ],
        ),
    )
    .meta(
        "u64s",
        MetaValue::Array(ValueType::U64, vec![MetaValue::U64(1)]),
    )
    .meta(
        "f64s",
        MetaValue::Array(ValueType::F64, vec![MetaValue::F64(0.5)]),
    );
    seeds.push(("nested_arrays", b.bytes()));

    let mut v2 = all_types_file();
    v2[4..8].copy_from_slice(&2u32.to_le_bytes());
    seeds.push(("version2", v2));
    seeds
}

#[test]
fn seeds_are_current() {
    // The committed seeds are what `seeds()` writes; regenerate them when the samples change.
    for (name, bytes) in seeds() {
        let path = root().join("fuzz/seeds/gguf_reader").join(name);
        let stored = std::fs::read(&path).unwrap_or_default();
        assert!(
            stored == bytes,
            "{} is stale: run `cargo test --test fuzz_replay -- --ignored regenerate_fuzz_seeds`",
            path.display()
        );
    }
}

#[test]
#[ignore = "writes files under fuzz/seeds"]
fn regenerate_fuzz_seeds() {
    let dir = root().join("fuzz/seeds/gguf_reader");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in seeds() {
        assert!(exercise_gguf(&bytes), "seed {name} is not accepted");
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}
