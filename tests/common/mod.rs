//! Helpers shared by the integration tests: fixture discovery, conversion, comparisons.
#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use t5g::convert::{convert, ConvertOptions};
use t5g::gguf::GgmlType;

/// Every fixture directory with a `reference.json`: `tests/fixtures/*`, plus the directories
/// under each root listed in `T5G_EXTRA_FIXTURES` (colon-separated), which is how checkpoints
/// the tests have never seen are checked (`tools/make_reference.py --seed N --out DIR`).
pub fn fixture_dirs() -> Vec<PathBuf> {
    let mut roots = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")];
    if let Ok(extra) = std::env::var("T5G_EXTRA_FIXTURES") {
        roots.extend(
            extra
                .split(':')
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
        );
    }
    let mut dirs = Vec::new();
    for root in roots {
        let Ok(entries) = std::fs::read_dir(&root) else {
            continue;
        };
        for e in entries.flatten() {
            if e.path().join("reference.json").is_file() {
                dirs.push(e.path());
            }
        }
    }
    dirs.sort();
    assert!(!dirs.is_empty(), "no fixtures found");
    dirs
}

/// The parsed `reference.json` of a fixture.
pub fn reference(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Converts a fixture checkpoint into a temporary GGUF file.
pub fn convert_fixture(
    dir: &Path,
    ty: GgmlType,
    encoder_window_inclusive: bool,
) -> tempfile::TempPath {
    let out = tempfile::Builder::new()
        .suffix(".gguf")
        .tempfile()
        .unwrap()
        .into_temp_path();
    let opts = ConvertOptions {
        input: dir.to_path_buf(),
        output: out.to_path_buf(),
        ty,
        encoder_window_inclusive,
        progress: false,
    };
    convert(&opts).unwrap_or_else(|e| panic!("converting {}: {e}", dir.display()));
    out
}

pub fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

pub fn matrix(v: &Value) -> Vec<Vec<f32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect()
}

/// Largest absolute difference between a flat row-major result and reference rows.
pub fn max_abs_diff(got: &[f32], want: &[Vec<f32>]) -> f32 {
    let width = want[0].len();
    assert_eq!(got.len(), want.len() * width, "shape mismatch");
    got.chunks(width)
        .zip(want)
        .flat_map(|(g, w)| g.iter().zip(w).map(|(a, b)| (a - b).abs()))
        .fold(0.0, f32::max)
}

/// Mean over rows of the cosine similarity between result rows and reference rows.
pub fn mean_cosine(got: &[f32], want: &[Vec<f32>]) -> f64 {
    let width = want[0].len();
    let sims: Vec<f64> = got
        .chunks(width)
        .zip(want)
        .map(|(g, w)| {
            let dot: f64 = g.iter().zip(w).map(|(a, b)| *a as f64 * *b as f64).sum();
            let ng: f64 = g.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt();
            let nw: f64 = w.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt();
            dot / (ng * nw)
        })
        .collect();
    sims.iter().sum::<f64>() / sims.len() as f64
}

pub fn name(dir: &Path) -> String {
    dir.file_name().unwrap().to_string_lossy().into_owned()
}
