//! A model keeps its last encoder pass's activation buffers for the next pass. Whatever a
//! previous pass left in them (a longer input, a shorter one, another input entirely), an
//! encoding is bit for bit what a freshly loaded model computes.

mod common;

use common::{convert_fixture, fixture_dirs};
use t5g::gguf::GgmlType;
use t5g::model::Model;

fn ids(n: usize, seed: u32) -> Vec<u32> {
    (0..n as u32)
        .map(|i| 3 + (i * 7 + seed * 13) % 60)
        .collect()
}

#[test]
fn reused_encoder_buffers_change_no_bit() {
    // Longer than the fixtures' sliding windows, and runs of tokens that fill and that leave
    // partial panels and tiles.
    let inputs = [ids(70, 1), ids(9, 2), ids(300, 3), ids(70, 4), ids(1, 5)];
    for dir in fixture_dirs() {
        for ty in [GgmlType::F32, GgmlType::Q4_0] {
            let path = convert_fixture(&dir, ty, true);
            let reused = Model::load(&path).unwrap();
            for (i, input) in inputs.iter().enumerate() {
                let got = reused.encode(input).unwrap();
                let want = Model::load(&path).unwrap().encode(input).unwrap();
                let (g, w): (Vec<u32>, Vec<u32>) = (
                    got.hidden.iter().map(|v| v.to_bits()).collect(),
                    want.hidden.iter().map(|v| v.to_bits()).collect(),
                );
                assert!(g == w, "{} {ty}: input {i} differs", dir.display());
            }
        }
    }
}
