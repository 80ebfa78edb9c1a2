//! The runtime against Hugging Face transformers: every fixture checkpoint is converted, run,
//! and compared with the reference outputs `tools/make_reference.py` recorded.

mod common;

use common::*;
use t5g::generate::{self, Flow};
use t5g::gguf::GgmlType;
use t5g::model::Model;
use t5g::AttentionPrecision;

const TOL: f32 = 1e-3;

#[test]
fn f32_encoder_states_and_logits_match_transformers() {
    for dir in fixture_dirs() {
        let reference = reference(&dir);
        let path = convert_fixture(&dir, GgmlType::F32, true);
        let model = Model::load(&path).unwrap();
        for case in reference["cases"].as_array().unwrap() {
            let label = format!("{} / {}", name(&dir), case["name"]);
            let enc = model.encode(&ids(&case["input_ids"])).unwrap();
            let d = max_abs_diff(&enc.hidden, &matrix(&case["encoder_last_hidden_state"]));
            assert!(d <= TOL, "{label}: encoder states differ by {d}");
            let mut state = model.start_decoder(&enc).unwrap();
            let logits = model
                .decode(&mut state, &ids(&case["decoder_input_ids"]))
                .unwrap();
            let d = max_abs_diff(&logits, &matrix(&case["logits"]));
            assert!(d <= TOL, "{label}: logits differ by {d}");
        }
    }
}

#[test]
fn f32_greedy_sequences_match_transformers() {
    for dir in fixture_dirs() {
        let reference = reference(&dir);
        let path = convert_fixture(&dir, GgmlType::F32, true);
        let model = Model::load(&path).unwrap();
        for case in reference["greedy"].as_array().unwrap() {
            let n = case["max_new_tokens"].as_u64().unwrap() as usize;
            let got =
                generate::greedy(&model, &ids(&case["input_ids"]), n, &mut |_| Flow::Continue)
                    .unwrap();
            assert_eq!(
                got.ids,
                ids(&case["output_ids"]),
                "{}: greedy output",
                name(&dir)
            );
        }
    }
}

#[test]
fn original_encoder_window_matches_its_reference() {
    let mut checked = 0;
    for dir in fixture_dirs() {
        let reference = reference(&dir);
        let Some(alt) = reference.get("alt_window") else {
            continue;
        };
        let path = convert_fixture(&dir, GgmlType::F32, false);
        let model = Model::load(&path).unwrap();
        assert!(!model.config().encoder_window_inclusive);
        for (case, alt_case) in reference["cases"]
            .as_array()
            .unwrap()
            .iter()
            .zip(alt["cases"].as_array().unwrap())
        {
            assert_eq!(case["name"], alt_case["name"]);
            let enc = model.encode(&ids(&case["input_ids"])).unwrap();
            let d = max_abs_diff(&enc.hidden, &matrix(&alt_case["encoder_last_hidden_state"]));
            assert!(
                d <= TOL,
                "{}: original-window encoder differs by {d}",
                name(&dir)
            );
            let mut state = model.start_decoder(&enc).unwrap();
            let logits = model
                .decode(&mut state, &ids(&case["decoder_input_ids"]))
                .unwrap();
            let d = max_abs_diff(&logits, &matrix(&alt_case["logits"]));
            assert!(
                d <= TOL,
                "{}: original-window logits differ by {d}",
                name(&dir)
            );
            checked += 1;
        }
    }
    assert!(checked > 0, "no fixture has alt_window references");
}

/// Mean logit cosine of a quantized file against a reference, over every case of a fixture.
fn quantized_cosine(
    model: &Model,
    reference: &serde_json::Value,
    logits_of: impl Fn(usize) -> Vec<Vec<f32>>,
) -> f64 {
    let cases = reference["cases"].as_array().unwrap();
    let mut total = 0.0;
    for (i, case) in cases.iter().enumerate() {
        let enc = model.encode(&ids(&case["input_ids"])).unwrap();
        let mut state = model.start_decoder(&enc).unwrap();
        let logits = model
            .decode(&mut state, &ids(&case["decoder_input_ids"]))
            .unwrap();
        total += mean_cosine(&logits, &logits_of(i));
    }
    total / cases.len() as f64
}

/// Loads a fixture converted to `ty` with the encoder's attention in `precision`.
fn quantized_model(dir: &std::path::Path, ty: GgmlType, precision: AttentionPrecision) -> Model {
    let mut model = Model::load(convert_fixture(dir, ty, true)).unwrap();
    model.set_encoder_attention(precision);
    model
}

/// q8_0 multiplies int8 weights by activations quantized to int8 per 32-block (as llama.cpp
/// does), so its error compounds through every layer of these tiny, deliberately touchy random
/// models. The figure the design asks for is the mean over every fixture; each model must
/// also stay close on its own. Int8 attention (not q8_0's default) adds its own error.
#[test]
fn q8_0_logits_stay_close_to_float32() {
    for (precision, each, mean_at_least) in [
        (AttentionPrecision::F32, 0.98, 0.99),
        (AttentionPrecision::Int8, 0.975, 0.99),
    ] {
        let mut per_model = Vec::new();
        for dir in fixture_dirs() {
            let reference = reference(&dir);
            let model = quantized_model(&dir, GgmlType::Q8_0, precision);
            let cases = reference["cases"].as_array().unwrap();
            let cos = quantized_cosine(&model, &reference, |i| matrix(&cases[i]["logits"]));
            let p = precision.name();
            println!(
                "{}: q8_0, {p} attention: mean logit cosine vs f32 = {cos:.5}",
                name(&dir)
            );
            assert!(
                cos >= each,
                "{}: q8_0 ({p} attention) cosine {cos}",
                name(&dir)
            );
            per_model.push(cos);
        }
        let mean = per_model.iter().sum::<f64>() / per_model.len() as f64;
        println!(
            "q8_0, {} attention: mean logit cosine over {} models = {mean:.5}",
            precision.name(),
            per_model.len()
        );
        assert!(mean >= mean_at_least, "q8_0 mean cosine {mean}");
    }
}

/// Against a reference whose weights were rounded through Q4_0, so what is left is the
/// runtime's own error: int8 activations, and int8 attention where chosen (q4_0's default on
/// CPUs with AVX-512 VNNI).
#[test]
fn q4_0_logits_stay_close_to_fake_quantized_reference() {
    for precision in [AttentionPrecision::F32, AttentionPrecision::Int8] {
        let mut per_model = Vec::new();
        for dir in fixture_dirs() {
            let reference = reference(&dir);
            let Some(q4) = reference.get("q4_0") else {
                continue;
            };
            let model = quantized_model(&dir, GgmlType::Q4_0, precision);
            let q4_cases = q4["cases"].as_array().unwrap();
            let cos = quantized_cosine(&model, &reference, |i| matrix(&q4_cases[i]["logits"]));
            // For scale: how far Q4_0 weights themselves move the logits.
            let cases = reference["cases"].as_array().unwrap();
            let vs_f32 = quantized_cosine(&model, &reference, |i| matrix(&cases[i]["logits"]));
            let p = precision.name();
            println!(
                "{}: q4_0, {p} attention: mean logit cosine vs fake-quantized f32 = {cos:.5} \
                 (vs f32 {vs_f32:.5})",
                name(&dir)
            );
            assert!(
                cos >= 0.99,
                "{}: q4_0 ({p} attention) cosine {cos}",
                name(&dir)
            );
            per_model.push(cos);
        }
        let mean = per_model.iter().sum::<f64>() / per_model.len() as f64;
        println!(
            "q4_0, {} attention: mean logit cosine over {} models = {mean:.5}",
            precision.name(),
            per_model.len()
        );
    }
}

#[test]
fn generation_agrees_with_teacher_forced_logits() {
    for dir in fixture_dirs() {
        let reference = reference(&dir);
        let model = Model::load(convert_fixture(&dir, GgmlType::F32, true)).unwrap();
        let input = ids(&reference["greedy"][0]["input_ids"]);
        let generated = generate::greedy(&model, &input, 24, &mut |_| Flow::Continue)
            .unwrap()
            .ids;
        // One batched call over the whole sequence: a different code path from step-by-step.
        let mut forced = vec![model.config().decoder_start_token_id];
        forced.extend_from_slice(&generated[..generated.len() - 1]);
        let enc = model.encode(&input).unwrap();
        let mut state = model.start_decoder(&enc).unwrap();
        let logits = model.decode(&mut state, &forced).unwrap();
        let argmaxes: Vec<u32> = logits
            .chunks(model.config().vocab_size)
            .map(generate::argmax)
            .collect();
        assert_eq!(argmaxes, generated, "{}", name(&dir));
    }
}

#[test]
fn cross_attention_keys_are_computed_once_per_input() {
    let dir = &fixture_dirs()[0];
    let model = Model::load(convert_fixture(dir, GgmlType::F32, true)).unwrap();
    let before = model.cross_kv_computations();
    let out = generate::greedy(&model, &[5, 6, 7, 8, 9], 30, &mut |_| Flow::Continue).unwrap();
    assert!(!out.ids.is_empty());
    assert_eq!(
        model.cross_kv_computations() - before,
        1,
        "one computation for {} steps",
        out.ids.len()
    );
}

#[test]
fn greedy_output_is_independent_of_thread_count() {
    let cases = fixture_dirs().into_iter().flat_map(|dir| {
        [AttentionPrecision::F32, AttentionPrecision::Int8].map(|p| (dir.clone(), p))
    });
    for (dir, precision) in cases {
        let model = quantized_model(&dir, GgmlType::Q8_0, precision);
        let input: Vec<u32> = (4..40).collect();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                generate::greedy(&model, &input, 16, &mut |_| Flow::Continue)
                    .unwrap()
                    .ids
            })
        };
        assert_eq!(run(1), run(3), "{} ({precision:?})", name(&dir));
    }
}
