//! Whole-model throughput measurement (`t5g bench`), and random-weight models of the released
//! shapes to measure it on ([`synthetic`]).
//!
//! A run encodes `input_tokens` pseudo-random ids in one pass, computes the cross-attention
//! caches, then decodes `new_tokens` steps greedily *forced*: each step feeds the argmax of the
//! previous one but end-of-sequence never stops it, so every run does the same amount of work.
//! Figures are set beside the machine's ceilings: the decoder step against memory bandwidth
//! (every weight byte is read once per token), the encoder's linear layers against the int8
//! multiply-accumulate peak.

pub mod synthetic;

use crate::error::{Error, Result};
use crate::generate::argmax;
use crate::kernels::{self, ceiling};
use crate::model::{Family, Model, StackConfig};
use serde::Serialize;
use std::time::Instant;

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Encoder input length.
    pub input_tokens: usize,
    /// Decoder steps (at least 2: the first one is timed separately).
    pub new_tokens: usize,
    /// Repetitions; the fastest encoder pass and the fastest decode loop are reported.
    pub runs: usize,
    /// Untimed encoder passes before the runs: a process's first pass faults in its
    /// activation buffers and the kernels' per-thread buffers (8–30% slower on the 270m).
    pub warmup: usize,
    /// Measure the machine's read bandwidth and int8 peak (a few seconds) to report fractions.
    pub ceilings: bool,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            input_tokens: 512,
            new_tokens: 64,
            runs: 1,
            warmup: 1,
            ceilings: true,
        }
    }
}

/// The figures of one benchmark. `Option`s are `null` in JSON where a figure is unavailable
/// (no ceiling measurement, no `/proc` on this OS).
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// The model file.
    pub model: String,
    /// Synthetic preset name, when the file is one.
    pub preset: Option<String>,
    /// `t5gemma` or `t5gemma2`.
    pub family: String,
    /// Storage type of most of the weight bytes (`q4_0`, ...).
    #[serde(rename = "type")]
    pub weight_type: String,
    /// File size.
    pub file_bytes: usize,
    /// Worker threads (rayon's pool).
    pub threads: usize,
    /// Kernel level in use (`avx512vnni`, `avx2`, `neon`, ...).
    pub kernel: String,
    /// How the encoder computes attention (`f32` or `int8`, see
    /// [`AttentionPrecision`](crate::AttentionPrecision)).
    pub encoder_attention: String,
    /// Encoder input length.
    pub input_tokens: usize,
    /// Decoder steps.
    pub new_tokens: usize,
    /// Repetitions (best of).
    pub runs: usize,
    /// Untimed encoder passes before the runs.
    pub warmup: usize,
    /// Seconds to map and validate the file and copy the decoder's weights to huge pages (set
    /// by the caller that loaded it).
    pub load_s: Option<f64>,
    /// Bytes of decoder weights read from huge-page memory (0: from the file map; see
    /// [`crate::model::Model::huge_page_bytes`]).
    pub huge_page_bytes: usize,
    /// Seconds of the fastest encoder pass.
    pub encode_s: f64,
    /// `input_tokens / encode_s`.
    pub encode_tokens_per_s: f64,
    /// Seconds to compute every decoder layer's cross-attention keys/values (once per input).
    pub cross_kv_s: f64,
    /// Seconds of the first decoder step (excluded from `decode_tokens_per_s`: it touches the
    /// caches and buffers for the first time).
    pub first_decode_step_s: f64,
    /// Seconds of decoder steps 2..=new_tokens (fastest run).
    pub decode_s: f64,
    /// `(new_tokens - 1) / decode_s`: steady-state steps per second, first step excluded.
    pub decode_tokens_per_s: f64,
    /// Peak resident set (`VmHWM`; includes the mapped file pages touched).
    pub peak_rss_bytes: Option<u64>,
    /// Decoder caches (self K/V and cross K/V) after the last step.
    pub decoder_cache_bytes: usize,
    /// Weight bytes one decoder step reads (every decoder matrix and the LM head).
    pub decode_weight_bytes_per_token: usize,
    /// Measured sustained read bandwidth of this machine with these threads.
    pub read_bandwidth_bytes_per_s: Option<f64>,
    /// `decode_weight_bytes_per_token * decode_tokens_per_s / read_bandwidth_bytes_per_s`.
    pub decode_bandwidth_fraction: Option<f64>,
    /// Multiply-accumulates of the encoder's linear layers per input token.
    pub encoder_linear_macs_per_token: usize,
    /// `2 * input_tokens * encoder_linear_macs_per_token / encode_s / 1e9` (operations, a
    /// multiply and an add each), counting the linear layers only but the whole pass's time.
    pub encoder_linear_gops: f64,
    /// Measured int8 multiply-accumulate peak of this machine, in operations (2 per MAC) / 1e9.
    pub int8_peak_gops: Option<f64>,
    /// `encoder_linear_gops / int8_peak_gops`.
    pub encoder_int8_peak_fraction: Option<f64>,
    /// Seconds of the encoder's matrix products alone: every layer's q/k/v, output, gate/up
    /// and down calls on `input_tokens` tokens, as the pass makes them, timed without the
    /// attention, norms and activations between them (fastest of `runs`).
    pub encoder_linear_only_s: f64,
    /// `2 * input_tokens * encoder_linear_macs_per_token / encoder_linear_only_s / 1e9`: the
    /// linear layers' own rate.
    pub encoder_linear_only_gops: f64,
    /// `encoder_linear_only_gops / int8_peak_gops`.
    pub encoder_linear_only_peak_fraction: Option<f64>,
}

/// Multiply-accumulates of one stack's projection and MLP matrices per token.
fn linear_macs_per_token(s: &StackConfig) -> usize {
    let attn = s.hidden * (2 * s.q_dim() + 2 * s.kv_dim());
    let mlp = 3 * s.hidden * s.ffn;
    s.n_layers * (attn + mlp)
}

/// Deterministic, ordinary token ids: no special ids (0..=2) and nothing at or above 256000
/// (T5Gemma 2's eoi / image ids), which take other paths through the embedding.
pub fn input_ids(vocab: usize, n: usize) -> Result<Vec<u32>> {
    let top = vocab.min(256_000);
    if top <= 3 {
        return Err(Error::invalid(format!(
            "vocabulary of {vocab} has no ordinary tokens"
        )));
    }
    let span = (top - 3) as u64;
    let mut x = 0x2545_f491_4f6c_dd1du64;
    Ok((0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (3 + x % span) as u32
        })
        .collect())
}

/// Peak resident set size from `/proc/self/status` (`VmHWM`), on Linux.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The storage type holding most of the file's tensor bytes.
fn dominant_type(model: &Model) -> String {
    let mut bytes: Vec<(crate::gguf::GgmlType, usize)> = Vec::new();
    for t in model.file().tensors() {
        let n = t.range.len();
        match bytes.iter_mut().find(|(ty, _)| *ty == t.ty) {
            Some(b) => b.1 += n,
            None => bytes.push((t.ty, n)),
        }
    }
    bytes
        .iter()
        .max_by_key(|(_, n)| *n)
        .map_or("none".into(), |(ty, _)| ty.name().into())
}

/// Reads one byte per page of every tensor, where the model reads it (the file map, or the
/// huge-page copy of the decoder's weights), so that page faults are not timed as compute.
fn prefault(model: &Model) {
    let file = model.file();
    let mut sum = 0u8;
    for info in file.tensors() {
        for chunk in file.bytes(info.range.clone()).chunks(4096) {
            sum = sum.wrapping_add(chunk[0]);
        }
    }
    std::hint::black_box(sum);
}

/// Machine ceilings: sustained read bandwidth (bytes/s) and int8 MAC peak (GOPS).
#[derive(Clone, Copy, Debug, Default)]
pub struct Ceilings {
    /// Bytes per second.
    pub read_bandwidth_bytes_per_s: Option<f64>,
    /// 1e9 operations per second (a MAC counts 2).
    pub int8_peak_gops: Option<f64>,
}

/// Measures the ceilings with as many threads as rayon's pool has: read bandwidth over a 1 GB
/// buffer, and the int8 MAC peak of the kernel level in use (its widest int8 instruction in a
/// register-resident loop).
pub fn measure_ceilings() -> Ceilings {
    let threads = rayon::current_num_threads();
    Ceilings {
        read_bandwidth_bytes_per_s: Some(ceiling::measure_read_bandwidth(threads) * 1e9),
        int8_peak_gops: Some(ceiling::measure_int8_peak_at(kernels::level(), threads)),
    }
}

/// The kernel level in use (`avx512vnni`, `avx2`, `neon`, ...).
pub fn kernel_name() -> String {
    kernels::level().name().into()
}

/// Runs the benchmark on a loaded model.
pub fn run(model: &Model, opts: &BenchOptions) -> Result<BenchReport> {
    if opts.input_tokens == 0 {
        return Err(Error::invalid(
            "the benchmark needs at least one input token",
        ));
    }
    if opts.new_tokens < 2 {
        return Err(Error::invalid(
            "the benchmark needs at least 2 new tokens (the first step is timed apart)",
        ));
    }
    if opts.runs == 0 {
        return Err(Error::invalid("the benchmark needs at least one run"));
    }
    let cfg = model.config();
    let input = input_ids(cfg.vocab_size, opts.input_tokens)?;
    prefault(model);
    for _ in 0..opts.warmup {
        model.encode(&input)?;
    }

    let mut best: Option<(f64, f64, f64, f64)> = None;
    let mut cache_bytes = 0;
    for _ in 0..opts.runs {
        let t = Instant::now();
        let encoded = model.encode(&input)?;
        let encode_s = t.elapsed().as_secs_f64();

        let t = Instant::now();
        let mut state = model.start_decoder(&encoded)?;
        let cross_kv_s = t.elapsed().as_secs_f64();

        let mut token = cfg.decoder_start_token_id;
        let t = Instant::now();
        let mut first_s = 0.0;
        let mut logits = Vec::new();
        for step in 0..opts.new_tokens {
            model.decode_into(&mut state, &[token], &mut logits)?;
            token = argmax(&logits);
            if step == 0 {
                first_s = t.elapsed().as_secs_f64();
            }
        }
        let decode_s = t.elapsed().as_secs_f64() - first_s;
        cache_bytes = state.cache_bytes();
        let b = best.get_or_insert((encode_s, cross_kv_s, first_s, decode_s));
        b.0 = b.0.min(encode_s);
        b.1 = b.1.min(cross_kv_s);
        b.2 = b.2.min(first_s);
        b.3 = b.3.min(decode_s);
    }
    let (encode_s, cross_kv_s, first_decode_step_s, decode_s) = best.expect("runs >= 1");
    // Before the matmul timing and the ceilings: both allocate buffers of their own.
    let peak_rss_bytes = peak_rss_bytes();
    let encoder_linear_only_s = time_encoder_matmuls(model, opts.input_tokens, opts.runs);

    let ceilings = if opts.ceilings {
        measure_ceilings()
    } else {
        Ceilings::default()
    };
    let encode_tokens_per_s = opts.input_tokens as f64 / encode_s;
    let decode_tokens_per_s = (opts.new_tokens - 1) as f64 / decode_s;
    let decode_weight_bytes_per_token = model.decode_weight_bytes_per_token();
    let encoder_linear_macs_per_token = linear_macs_per_token(&cfg.encoder);
    let encoder_ops = 2.0 * (opts.input_tokens * encoder_linear_macs_per_token) as f64;
    let encoder_linear_gops = encoder_ops / encode_s / 1e9;
    let encoder_linear_only_gops = encoder_ops / encoder_linear_only_s / 1e9;
    let preset = model
        .file()
        .opt_str("t5g.synthetic.preset")
        .ok()
        .flatten()
        .map(String::from);
    Ok(BenchReport {
        model: model.file().path().display().to_string(),
        preset,
        family: match cfg.family {
            Family::T5Gemma => "t5gemma",
            Family::T5Gemma2 => "t5gemma2",
        }
        .into(),
        weight_type: dominant_type(model),
        file_bytes: model.file().file_size(),
        threads: rayon::current_num_threads(),
        kernel: kernel_name(),
        encoder_attention: model.encoder_attention().name().into(),
        input_tokens: opts.input_tokens,
        new_tokens: opts.new_tokens,
        runs: opts.runs,
        warmup: opts.warmup,
        load_s: None,
        huge_page_bytes: model.huge_page_bytes(),
        encode_s,
        encode_tokens_per_s,
        cross_kv_s,
        first_decode_step_s,
        decode_s,
        decode_tokens_per_s,
        peak_rss_bytes,
        decoder_cache_bytes: cache_bytes,
        decode_weight_bytes_per_token,
        read_bandwidth_bytes_per_s: ceilings.read_bandwidth_bytes_per_s,
        decode_bandwidth_fraction: ceilings
            .read_bandwidth_bytes_per_s
            .map(|bw| decode_weight_bytes_per_token as f64 * decode_tokens_per_s / bw),
        encoder_linear_macs_per_token,
        encoder_linear_gops,
        int8_peak_gops: ceilings.int8_peak_gops,
        encoder_int8_peak_fraction: ceilings.int8_peak_gops.map(|p| encoder_linear_gops / p),
        encoder_linear_only_s,
        encoder_linear_only_gops,
        encoder_linear_only_peak_fraction: ceilings
            .int8_peak_gops
            .map(|p| encoder_linear_only_gops / p),
    })
}

/// Seconds of the encoder's matrix products on `n_tokens` tokens (fastest of `runs`), called as
/// the forward pass calls them ([`Model::encoder_matmuls`]) on activations of the same shapes.
/// The values do not matter to the kernels' speed; they are deterministic and non-trivial.
fn time_encoder_matmuls(model: &Model, n_tokens: usize, runs: usize) -> f64 {
    let groups = model.encoder_matmuls();
    let widest_in = groups.iter().flatten().map(|w| w.cols).max().unwrap_or(0);
    let x: Vec<f32> = (0..n_tokens * widest_in)
        .map(|i| ((i % 977) as f32 * 0.37).sin())
        .collect();
    // Output i of every group goes to buffer i, made as large as any group needs and written
    // once before the clock starts: as in the forward pass, whose buffers are reused from
    // layer to layer, no page is faulted in while timing.
    let width = groups.iter().map(Vec::len).max().unwrap_or(0);
    let mut outs: Vec<Vec<f32>> = (0..width)
        .map(|i| {
            let rows = groups.iter().filter_map(|g| g.get(i)).map(|w| w.rows);
            vec![1.0; n_tokens * rows.max().unwrap_or(0)]
        })
        .collect();
    let mut best = f64::INFINITY;
    for _ in 0..runs {
        let t = Instant::now();
        for group in &groups {
            let cols = group[0].cols;
            let mut ys: Vec<&mut [f32]> = outs
                .iter_mut()
                .zip(group)
                .map(|(o, w)| &mut o[..n_tokens * w.rows])
                .collect();
            kernels::matmul_many(group, &x[..n_tokens * cols], n_tokens, &mut ys);
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    best
}

#[cfg(test)]
mod tests {
    use super::synthetic::SyntheticModel;
    use super::*;
    use crate::gguf::GgmlType;

    #[test]
    fn input_ids_avoid_special_tokens() {
        let ids = input_ids(262_144, 4096).unwrap();
        assert!(ids.iter().all(|&i| (3..256_000).contains(&i)));
        assert_eq!(ids, input_ids(262_144, 4096).unwrap());
        assert!(input_ids(3, 1).is_err());
    }

    #[test]
    fn encoder_macs_of_2b_match_its_matrices() {
        let m = SyntheticModel::new("t5gemma-2b-2b", GgmlType::Q4_0).unwrap();
        let (e, _) = m.stacks();
        // q 2048x2304, k/v 1024x2304, o 2304x2048, 3 MLP matrices 9216x2304.
        let per_layer = 2304 * (2048 + 1024 + 1024 + 2048) + 3 * 2304 * 9216;
        let cfg = StackConfig {
            n_layers: e.layers,
            hidden: e.hidden,
            ffn: e.ffn,
            n_heads: e.heads,
            n_kv_heads: e.kv_heads,
            head_dim: e.head_dim,
            query_pre_attn_scalar: 256.0,
            sliding_window: 4096,
            layer_kinds: Vec::new(),
            rms_norm_eps: 1e-6,
            attn_logit_softcapping: None,
            rope_full: crate::model::RopeParams {
                theta: 1e4,
                linear_factor: 1.0,
            },
            rope_sliding: crate::model::RopeParams {
                theta: 1e4,
                linear_factor: 1.0,
            },
        };
        assert_eq!(linear_macs_per_token(&cfg), 26 * per_layer);
    }

    #[test]
    fn run_reports_consistent_figures() {
        let dir = tempfile::tempdir().unwrap();
        let m = SyntheticModel::new("t5gemma2-270m-270m", GgmlType::Q4_0)
            .unwrap()
            .with_layers(1, 1)
            .with_vocab(2048);
        let (path, _) = m.cached(dir.path(), false).unwrap();
        let model = Model::load(&path).unwrap();
        let opts = BenchOptions {
            input_tokens: 16,
            new_tokens: 3,
            runs: 2,
            warmup: 1,
            ceilings: false,
        };
        let r = run(&model, &opts).unwrap();
        assert_eq!(r.preset.as_deref(), Some("t5gemma2-270m-270m"));
        assert_eq!(r.weight_type, "q4_0");
        assert_eq!(r.family, "t5gemma2");
        assert_eq!(
            r.file_bytes,
            std::fs::metadata(&path).unwrap().len() as usize
        );
        assert!((r.encode_tokens_per_s - 16.0 / r.encode_s).abs() < 1e-6 * r.encode_tokens_per_s);
        assert!((r.decode_tokens_per_s - 2.0 / r.decode_s).abs() < 1e-6 * r.decode_tokens_per_s);
        assert!(r.decode_weight_bytes_per_token > 0 && r.decoder_cache_bytes > 0);
        // The timed matrix products are exactly the ones the MAC count counts.
        let timed_macs: usize = model
            .encoder_matmuls()
            .iter()
            .flatten()
            .map(|w| w.rows * w.cols)
            .sum();
        assert_eq!(timed_macs, r.encoder_linear_macs_per_token);
        let ops = 2.0 * 16.0 * timed_macs as f64;
        assert!(r.encoder_linear_only_s > 0.0);
        let gops = ops / r.encoder_linear_only_s / 1e9;
        assert!((r.encoder_linear_only_gops - gops).abs() <= 1e-9 * gops);
        assert!(r.read_bandwidth_bytes_per_s.is_none() && r.decode_bandwidth_fraction.is_none());
        if cfg!(target_os = "linux") {
            assert!(r.peak_rss_bytes.unwrap() > 0);
        }
        let json = serde_json::to_value(&r).unwrap();
        for key in [
            "encode_tokens_per_s",
            "decode_tokens_per_s",
            "threads",
            "peak_rss_bytes",
            "type",
            "encoder_linear_only_gops",
            "huge_page_bytes",
            "warmup",
        ] {
            assert!(json.get(key).is_some(), "{key}");
        }
        let bad = BenchOptions {
            new_tokens: 1,
            ..opts
        };
        assert!(run(&model, &bad).is_err());
    }
}
