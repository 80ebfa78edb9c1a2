//! What the `safetensors_config` fuzz target does with each input, shared with the test that
//! replays the seeds and past crashers (the fuzz target includes this file by path).
//!
//! An input is one or more files joined by [`SEPARATOR`]: `config.json`, then
//! `model.safetensors`, `generation_config.json`, `tokenizer.model`, `tokenizer_config.json`
//! and `model.safetensors.index.json`, in that order. The first part is always parsed in
//! memory; inputs with two or more parts are also written into a scratch directory and
//! converted end to end.

use std::path::{Path, PathBuf};
use t5g::convert::config::{GenerationConfig, ModelConfig};
use t5g::convert::{convert, ConvertOptions};
use t5g::gguf::{GgmlType, GgufFile};
use t5g::tokenizer::Tokenizer;

/// Separates the files of one input.
pub const SEPARATOR: &[u8] = b"\n--t5g-file--\n";

/// The checkpoint files, in the order an input lists them.
pub const FILE_NAMES: [&str; 6] = [
    "config.json",
    "model.safetensors",
    "generation_config.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "model.safetensors.index.json",
];

/// Splits an input into its files.
pub fn split_files(data: &[u8]) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let mut rest = data;
    while parts.len() + 1 < FILE_NAMES.len() {
        let Some(at) = rest.windows(SEPARATOR.len()).position(|w| w == SEPARATOR) else {
            break;
        };
        parts.push(&rest[..at]);
        rest = &rest[at + SEPARATOR.len()..];
    }
    parts.push(rest);
    parts
}

/// Joins files into one input (the inverse of [`split_files`]).
pub fn join_files(files: &[&[u8]]) -> Vec<u8> {
    files.join(SEPARATOR)
}

/// A scratch checkpoint directory for this process, emptied before each use.
/// A fresh directory per call: replay tests run on several threads of one process.
fn scratch() -> PathBuf {
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("t5g-fuzz-convert-{}-{call}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("out")).unwrap();
    dir
}

/// Parses the first file as `config.json` (and as `generation_config.json`) in memory; with
/// two or more files, converts them end to end and reads the output back with the GGUF reader
/// and the tokenizer. Returns whether the conversion (or, for one file, the config) was
/// accepted. Panics only on a converter bug.
pub fn exercise_convert(data: &[u8]) -> bool {
    let files = split_files(data);
    let name = Path::new("config.json");
    let config_ok = ModelConfig::from_bytes(files[0], name).is_ok();
    let _ = GenerationConfig::from_bytes(files[0], name);
    if files.len() < 2 {
        return config_ok;
    }
    let dir = scratch();
    for (bytes, name) in files.iter().zip(FILE_NAMES) {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    let out = dir.join("out/model.gguf");
    let mut opts = ConvertOptions::new(&dir, &out);
    opts.ty = [GgmlType::F32, GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_0][data.len() % 4];
    let accepted = match convert(&opts) {
        Ok(report) => {
            let bytes = std::fs::read(&out).unwrap();
            assert_eq!(report.output_bytes, bytes.len() as u64);
            assert!(
                super::exercise::exercise_gguf(&bytes),
                "the converter wrote a file the reader refuses"
            );
            let file = GgufFile::open(&out).unwrap();
            if file.get("tokenizer.ggml.tokens").is_some() {
                Tokenizer::from_gguf(&file).expect("the converted tokenizer loads");
            }
            true
        }
        Err(_) => {
            assert!(!out.exists(), "a failed conversion left its output behind");
            false
        }
    };
    let _ = std::fs::remove_dir_all(&dir);
    accepted
}
