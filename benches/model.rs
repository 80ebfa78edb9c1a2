//! Model-level micro-benchmarks at T5Gemma 2 270m shapes, q4_0, on a small synthetic variant
//! (1 encoder layer, 2 decoder layers; cached in the temp dir like `t5g bench --synthetic`):
//!
//! - `encoder_layer/512_tokens`: one encoder pass over 512 tokens through a single layer (plus
//!   the embedding lookup and final norm, which are negligible beside it);
//! - `decoder_step/2_layers_lm_head`: one decoder step with 512 encoder tokens in the cross
//!   cache: two layers and the 262144 × 640 LM head, which dominates the step at this size.
//!
//! Whole-model figures come from `t5g bench`; these isolate the two loops it is made of.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use t5g::bench::{input_ids, synthetic};
use t5g::gguf::GgmlType;
use t5g::model::Model;

fn model() -> Model {
    let m = synthetic::SyntheticModel::new("t5gemma2-270m-270m", GgmlType::Q4_0)
        .expect("known preset")
        .with_layers(1, 2);
    let (path, _) = m
        .cached(&synthetic::default_dir(), false)
        .expect("writing the synthetic model");
    Model::load(path).expect("loading the synthetic model")
}

fn bench_model(c: &mut Criterion) {
    let model = model();
    let input = input_ids(model.config().vocab_size, 512).expect("ids");

    let mut g = c.benchmark_group("encoder_layer");
    g.sample_size(10);
    g.throughput(Throughput::Elements(input.len() as u64));
    g.bench_function("512_tokens", |b| {
        b.iter(|| model.encode(&input).expect("encode"))
    });
    g.finish();

    let encoded = model.encode(&input).expect("encode");
    let state = model.start_decoder(&encoded).expect("decoder");
    let start = model.config().decoder_start_token_id;
    let mut g = c.benchmark_group("decoder_step");
    g.throughput(Throughput::Elements(1));
    g.bench_function("2_layers_lm_head", |b| {
        b.iter_batched_ref(
            || state.clone(),
            |s| model.decode(s, &[start]).expect("decode"),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench_model);
criterion_main!(benches);
