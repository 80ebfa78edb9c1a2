//! Random-weight model files of the released T5Gemma shapes, for benchmarking without
//! downloading checkpoints.
//!
//! Weights are drawn directly in the target format (random Q4_0 / Q8_0 blocks with f16 scales
//! sized for a weight standard deviation of about 0.02, small random norm gains), streamed
//! through [`GgufWriter`] chunk by chunk: no tensor, let alone the model, is ever held whole in
//! f32. Every chunk has its own seed derived from (seed, tensor, chunk), so files are
//! byte-for-byte reproducible and chunks are generated in parallel.
//!
//! Shapes come from `shared/reference/T5GEMMA_ARCHITECTURE.md`. `t5gemma2-1b-1b` and
//! `t5gemma2-4b-4b` are **inferred** there (Gemma 3 1B / 4B text shapes), not read from
//! released configs; [`Preset::inferred`] marks them.

use crate::error::{Error, Result};
use crate::gguf::{GgmlType, GgufWriter, MetaValue};
use crate::model::Family;
use rayon::prelude::*;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Bumped whenever the bytes a (preset, type, seed) produces change, so stale cached files are
/// never reused: it is part of the cached file name.
pub const GENERATOR_VERSION: u32 = 1;

/// The seed used unless one is given.
pub const DEFAULT_SEED: u64 = 0x7435_6762_656e_6368;

/// Standard deviation of random matrix weights (Gemma's initializer range).
const WEIGHT_STD: f32 = 0.02;
/// Norm gains are stored as `w` with the norm using `1 + w`: keep them near zero.
const NORM_RANGE: f32 = 0.1;
/// Bytes generated per parallel chunk.
const CHUNK_BYTES: usize = 4 << 20;

/// The shape of one stack (encoder or decoder).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackShape {
    /// Layers.
    pub layers: usize,
    /// Hidden width H.
    pub hidden: usize,
    /// MLP width I.
    pub ffn: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Head size (also `query_pre_attn_scalar` in every released model).
    pub head_dim: usize,
    /// Sliding window W.
    pub sliding_window: usize,
}

impl StackShape {
    const fn v1(
        layers: usize,
        hidden: usize,
        ffn: usize,
        heads: usize,
        head_dim: usize,
        kv: usize,
    ) -> Self {
        StackShape {
            layers,
            hidden,
            ffn,
            heads,
            kv_heads: kv,
            head_dim,
            sliding_window: 4096,
        }
    }
    const fn v2(
        layers: usize,
        hidden: usize,
        ffn: usize,
        heads: usize,
        kv: usize,
        window: usize,
    ) -> Self {
        StackShape {
            layers,
            hidden,
            ffn,
            heads,
            kv_heads: kv,
            head_dim: 256,
            sliding_window: window,
        }
    }
}

/// A released model shape.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Preset {
    /// `t5gemma-2b-2b`, `t5gemma2-270m-270m`, ...
    pub name: &'static str,
    /// Model family.
    pub family: Family,
    /// Encoder stack.
    pub encoder: StackShape,
    /// Decoder stack.
    pub decoder: StackShape,
    /// Embedding rows.
    pub vocab: usize,
    /// Full-attention RoPE linear scaling factor (T5Gemma 2; 1 = none).
    pub rope_full_factor: f32,
    /// Shapes inferred from the decoder-only Gemma of the same size, not from a released config.
    pub inferred: bool,
}

const S: StackShape = StackShape::v1(8, 512, 1024, 8, 64, 8);
const B: StackShape = StackShape::v1(12, 768, 2048, 12, 64, 12);
const L: StackShape = StackShape::v1(24, 1024, 2816, 16, 64, 16);
const ML: StackShape = StackShape::v1(26, 1152, 6912, 4, 256, 4);
const XL: StackShape = StackShape::v1(24, 2048, 5120, 32, 64, 32);
const G2B: StackShape = StackShape::v1(26, 2304, 9216, 8, 256, 4);
const G9B: StackShape = StackShape::v1(42, 3584, 14336, 16, 256, 8);
const V2_270M: StackShape = StackShape::v2(18, 640, 2048, 4, 1, 512);
const V2_1B: StackShape = StackShape::v2(26, 1152, 6912, 4, 1, 512);
const V2_4B: StackShape = StackShape::v2(34, 2560, 10240, 8, 4, 1024);

const fn v1(name: &'static str, encoder: StackShape, decoder: StackShape) -> Preset {
    Preset {
        name,
        family: Family::T5Gemma,
        encoder,
        decoder,
        vocab: 256_000,
        rope_full_factor: 1.0,
        inferred: false,
    }
}

const fn v2(
    name: &'static str,
    stack: StackShape,
    rope_full_factor: f32,
    inferred: bool,
) -> Preset {
    Preset {
        name,
        family: Family::T5Gemma2,
        encoder: stack,
        decoder: stack,
        vocab: 262_144,
        rope_full_factor,
        inferred,
    }
}

/// Every released shape.
pub const PRESETS: &[Preset] = &[
    v1("t5gemma-s-s", S, S),
    v1("t5gemma-b-b", B, B),
    v1("t5gemma-l-l", L, L),
    v1("t5gemma-ml-ml", ML, ML),
    v1("t5gemma-xl-xl", XL, XL),
    v1("t5gemma-2b-2b", G2B, G2B),
    v1("t5gemma-9b-2b", G9B, G2B),
    v1("t5gemma-9b-9b", G9B, G9B),
    v2("t5gemma2-270m-270m", V2_270M, 8.0, false),
    v2("t5gemma2-1b-1b", V2_1B, 1.0, true),
    v2("t5gemma2-4b-4b", V2_4B, 8.0, true),
];

/// Looks a preset up by name.
pub fn preset(name: &str) -> Option<&'static Preset> {
    PRESETS
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case(name.trim()))
}

/// The preset names, comma-separated (for error messages and help).
pub fn preset_names() -> String {
    PRESETS
        .iter()
        .map(|p| p.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The weight types a synthetic model can be written in.
pub const TYPES: [GgmlType; 4] = [GgmlType::F32, GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_0];

/// What a tensor holds, which decides how its random values are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Matrix,
    Norm,
}

struct Planned {
    name: String,
    /// ggml order: `shape[0]` is the row length.
    shape: Vec<usize>,
    ty: GgmlType,
    kind: Kind,
}

/// A synthetic model: a preset, a weight type, a seed, and optional overrides that make small
/// variants (fewer layers, a smaller vocabulary) for tests and micro-benchmarks.
#[derive(Clone, Debug, PartialEq)]
pub struct SyntheticModel {
    /// The shape.
    pub preset: Preset,
    /// Type of every 2-D weight.
    pub ty: GgmlType,
    /// Seed of every random value.
    pub seed: u64,
    /// `Some((encoder, decoder))` overrides the layer counts.
    pub layers: Option<(usize, usize)>,
    /// Overrides the vocabulary size.
    pub vocab: Option<usize>,
}

impl SyntheticModel {
    /// A preset by name in one of [`TYPES`].
    pub fn new(preset_name: &str, ty: GgmlType) -> Result<Self> {
        let preset = *preset(preset_name).ok_or_else(|| {
            Error::invalid(format!(
                "unknown synthetic preset `{preset_name}` (known: {})",
                preset_names()
            ))
        })?;
        if !TYPES.contains(&ty) {
            return Err(Error::invalid(format!(
                "synthetic models are written in f32, f16, q8_0 or q4_0, not {ty}"
            )));
        }
        Ok(SyntheticModel {
            preset,
            ty,
            seed: DEFAULT_SEED,
            layers: None,
            vocab: None,
        })
    }

    /// Overrides the layer counts of both stacks.
    pub fn with_layers(mut self, encoder: usize, decoder: usize) -> Self {
        self.layers = Some((encoder, decoder));
        self
    }

    /// Overrides the vocabulary size. A T5Gemma 2 vocabulary of 256000 rows or fewer has no
    /// eoi id (256000) and so no `token_embd_eoi.weight`.
    pub fn with_vocab(mut self, vocab: usize) -> Self {
        self.vocab = Some(vocab);
        self
    }

    /// Uses another seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The stacks after overrides.
    pub fn stacks(&self) -> (StackShape, StackShape) {
        let (mut e, mut d) = (self.preset.encoder, self.preset.decoder);
        if let Some((le, ld)) = self.layers {
            e.layers = le;
            d.layers = ld;
        }
        (e, d)
    }

    /// Embedding rows after overrides.
    pub fn vocab(&self) -> usize {
        self.vocab.unwrap_or(self.preset.vocab)
    }

    /// The cache file name: everything that decides the bytes is in it.
    pub fn file_name(&self) -> String {
        let mut name = format!(
            "t5g-synthetic-g{GENERATOR_VERSION}-{}-{}",
            self.preset.name, self.ty
        );
        if let Some((e, d)) = self.layers {
            name += &format!("-layers{e}x{d}");
        }
        if let Some(v) = self.vocab {
            name += &format!("-vocab{v}");
        }
        if self.seed != DEFAULT_SEED {
            name += &format!("-seed{:x}", self.seed);
        }
        name + ".gguf"
    }

    /// Parameters stored in the file (the tied LM head is not stored). For unmodified v1
    /// presets this equals the Hub parameter count.
    pub fn n_params(&self) -> usize {
        self.plan()
            .iter()
            .map(|t| t.shape.iter().product::<usize>())
            .sum()
    }

    fn eoi_token_id(&self) -> Option<usize> {
        (self.preset.family == Family::T5Gemma2 && self.vocab() > 256_000).then_some(256_000)
    }

    fn plan(&self) -> Vec<Planned> {
        let (e, d) = self.stacks();
        let v1 = self.preset.family == Family::T5Gemma;
        let mut out = Vec::new();
        let mut matrix = |name: String, rows: usize, cols: usize| {
            // Q8_0/Q4_0 need whole blocks; other rows fall back to f16 (docs/FORMAT.md).
            let ty = if self.ty.row_bytes(cols).is_some() {
                self.ty
            } else {
                GgmlType::F16
            };
            out.push(Planned {
                name,
                shape: vec![cols, rows],
                ty,
                kind: Kind::Matrix,
            })
        };
        let vocab = self.vocab();
        if v1 {
            matrix("enc.token_embd.weight".into(), vocab, e.hidden);
            matrix("dec.token_embd.weight".into(), vocab, d.hidden);
        } else {
            matrix("token_embd.weight".into(), vocab, e.hidden);
        }
        for (prefix, s) in [("enc", e), ("dec", d)] {
            for i in 0..s.layers {
                let p = format!("{prefix}.blk.{i}");
                let (q, kv) = (s.heads * s.head_dim, s.kv_heads * s.head_dim);
                matrix(format!("{p}.attn_q.weight"), q, s.hidden);
                matrix(format!("{p}.attn_k.weight"), kv, s.hidden);
                matrix(format!("{p}.attn_v.weight"), kv, s.hidden);
                matrix(format!("{p}.attn_output.weight"), s.hidden, q);
                if v1 && prefix == "dec" {
                    matrix(format!("{p}.cross_attn_q.weight"), q, s.hidden);
                    matrix(format!("{p}.cross_attn_k.weight"), kv, e.hidden);
                    matrix(format!("{p}.cross_attn_v.weight"), kv, e.hidden);
                    matrix(format!("{p}.cross_attn_output.weight"), s.hidden, q);
                }
                matrix(format!("{p}.ffn_gate.weight"), s.ffn, s.hidden);
                matrix(format!("{p}.ffn_up.weight"), s.ffn, s.hidden);
                matrix(format!("{p}.ffn_down.weight"), s.hidden, s.ffn);
            }
        }
        let mut norm = |name: String, len: usize| {
            out.push(Planned {
                name,
                shape: vec![len],
                ty: GgmlType::F32,
                kind: Kind::Norm,
            })
        };
        if self.eoi_token_id().is_some() {
            norm("token_embd_eoi.weight".into(), e.hidden);
        }
        for (prefix, s) in [("enc", e), ("dec", d)] {
            for i in 0..s.layers {
                let p = format!("{prefix}.blk.{i}");
                let mut names = vec![
                    "attn_norm",
                    "post_attention_norm",
                    "ffn_norm",
                    "post_ffw_norm",
                ];
                if v1 && prefix == "dec" {
                    names.extend(["cross_attn_norm", "post_cross_attn_norm"]);
                }
                for n in names {
                    norm(format!("{p}.{n}.weight"), s.hidden);
                }
                if !v1 {
                    norm(format!("{p}.attn_q_norm.weight"), s.head_dim);
                    norm(format!("{p}.attn_k_norm.weight"), s.head_dim);
                }
            }
            norm(format!("{prefix}.output_norm.weight"), s.hidden);
        }
        out
    }

    fn metadata(&self, w: &mut GgufWriter) {
        let arch = self.preset.family.arch();
        let (e, d) = self.stacks();
        let v1 = self.preset.family == Family::T5Gemma;
        let key = |k: &str| format!("{arch}.{k}");
        w.add_metadata("general.architecture", MetaValue::String(arch.into()));
        w.add_metadata(
            "general.name",
            MetaValue::String(format!("synthetic {} {}", self.preset.name, self.ty)),
        );
        let file_type = match self.ty {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            _ => 7,
        };
        w.add_metadata("general.file_type", MetaValue::U32(file_type));
        w.add_metadata("general.quantization_version", MetaValue::U32(2));
        w.add_metadata(
            "t5g.synthetic.preset",
            MetaValue::String(self.preset.name.into()),
        );
        w.add_metadata("t5g.synthetic.seed", MetaValue::U64(self.seed));
        w.add_metadata(
            "t5g.synthetic.generator_version",
            MetaValue::U32(GENERATOR_VERSION),
        );
        w.add_metadata(key("vocab_size"), MetaValue::U32(self.vocab() as u32));
        w.add_metadata(key("decoder_start_token_id"), MetaValue::U32(2));
        w.add_metadata(key("eos_token_ids"), MetaValue::i32_array([1]));
        if let Some(eoi) = self.eoi_token_id() {
            w.add_metadata(key("eoi_token_id"), MetaValue::U32(eoi as u32));
        }
        for (stack, s) in [("encoder", e), ("decoder", d)] {
            let k = |name: &str| format!("{arch}.{stack}.{name}");
            let u = |v: usize| MetaValue::U32(v as u32);
            w.add_metadata(k("block_count"), u(s.layers));
            w.add_metadata(k("embedding_length"), u(s.hidden));
            w.add_metadata(k("feed_forward_length"), u(s.ffn));
            w.add_metadata(k("attention.head_count"), u(s.heads));
            w.add_metadata(k("attention.head_count_kv"), u(s.kv_heads));
            w.add_metadata(k("attention.key_length"), u(s.head_dim));
            w.add_metadata(k("attention.value_length"), u(s.head_dim));
            w.add_metadata(
                k("attention.query_pre_attn_scalar"),
                MetaValue::F32(s.head_dim as f32),
            );
            w.add_metadata(k("attention.sliding_window"), u(s.sliding_window));
            // v1 alternates starting with sliding; v2 repeats 5 sliding then 1 full.
            let types = (0..s.layers).map(|i| {
                let full = if v1 { i % 2 == 1 } else { i % 6 == 5 };
                if full {
                    "full_attention"
                } else {
                    "sliding_attention"
                }
            });
            w.add_metadata(k("attention.layer_types"), MetaValue::string_array(types));
            w.add_metadata(k("attention.layer_norm_rms_epsilon"), MetaValue::F32(1e-6));
            let (theta_full, factor_full) = if v1 {
                (1e4, 1.0)
            } else {
                (1e6, self.preset.rope_full_factor)
            };
            w.add_metadata(k("rope.freq_base"), MetaValue::F32(theta_full));
            w.add_metadata(k("rope.scaling.factor"), MetaValue::F32(factor_full));
            w.add_metadata(k("rope.freq_base_swa"), MetaValue::F32(1e4));
            w.add_metadata(k("rope.scaling_swa.factor"), MetaValue::F32(1.0));
            if v1 {
                w.add_metadata(k("attn_logit_softcapping"), MetaValue::F32(50.0));
            }
        }
        if v1 {
            w.add_metadata(key("decoder.final_logit_softcapping"), MetaValue::F32(30.0));
            w.add_metadata(
                "t5gemma.encoder.attention.sliding_window_inclusive",
                MetaValue::Bool(true),
            );
        }
    }

    /// Writes the model to `path` (atomically: a partial file is never left behind).
    pub fn write(&self, path: &Path) -> Result<()> {
        let (e, d) = self.stacks();
        for (stack, s) in [("encoder", e), ("decoder", d)] {
            if s.layers == 0 {
                return Err(Error::invalid(format!(
                    "synthetic {stack} needs at least one layer"
                )));
            }
        }
        let plan = self.plan();
        let mut w = GgufWriter::new();
        self.metadata(&mut w);
        for t in &plan {
            w.add_tensor(t.name.clone(), t.ty, &t.shape)?;
        }
        let seed = self.seed;
        w.write_file(path, |i, out| {
            write_tensor(&plan[i], mix(seed, i as u64), out)
        })
        .map_err(|e| match e {
            Error::Io { source, .. } => Error::io(path, source),
            other => other,
        })
    }

    /// The cached file for this model in `dir` (created if needed), generating it when absent
    /// or when `regenerate` is set. Returns the path and whether it was generated now.
    pub fn cached(&self, dir: &Path, regenerate: bool) -> Result<(PathBuf, bool)> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join(self.file_name());
        // Files are renamed into place only when complete, so existence means complete.
        if path.is_file() && !regenerate {
            return Ok((path, false));
        }
        self.write(&path)?;
        Ok((path, true))
    }

    /// Deletes the cached file in `dir`; returns whether there was one.
    pub fn remove_cached(&self, dir: &Path) -> Result<bool> {
        let path = dir.join(self.file_name());
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io(path, e)),
        }
    }
}

/// Where synthetic files are cached unless another directory is given.
pub fn default_dir() -> PathBuf {
    std::env::temp_dir().join("t5g-synthetic")
}

/// SplitMix64: tiny, fast, and identical on every platform (the `rand` small generators make
/// no such promise), which keeps cached files reproducible.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    fn symmetric(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (2.0 / (1u64 << 24) as f32) - 1.0
    }

    fn fill(&mut self, out: &mut [u8]) {
        for c in out.chunks_mut(8) {
            c.copy_from_slice(&self.next_u64().to_le_bytes()[..c.len()]);
        }
    }
}

fn mix(a: u64, b: u64) -> u64 {
    SplitMix64(a ^ b.wrapping_mul(0xd1b5_4a32_d192_ed03)).next_u64()
}

fn write_tensor(t: &Planned, seed: u64, out: &mut dyn Write) -> Result<()> {
    let row_bytes =
        t.ty.row_bytes(t.shape[0])
            .expect("planned shapes fit their type");
    let rows: usize = t.shape[1..].iter().product();
    let rows_per_chunk = (CHUNK_BYTES / row_bytes).max(1);
    let n_chunks = rows.div_ceil(rows_per_chunk);
    // A few chunks per thread at a time: parallel, yet bounded memory.
    let group = 2 * rayon::current_num_threads();
    let mut first = 0;
    while first < n_chunks {
        let last = (first + group).min(n_chunks);
        let chunks: Vec<Vec<u8>> = (first..last)
            .into_par_iter()
            .map(|c| {
                let r0 = c * rows_per_chunk;
                let n = rows_per_chunk.min(rows - r0);
                let mut buf = vec![0u8; n * row_bytes];
                fill_random(t, &mut SplitMix64(mix(seed, c as u64)), &mut buf);
                buf
            })
            .collect();
        for buf in &chunks {
            out.write_all(buf)
                .map_err(|e| Error::io("<synthetic model>", e))?;
        }
        first = last;
    }
    Ok(())
}

/// Fills whole rows of `t` with random values in its format.
fn fill_random(t: &Planned, rng: &mut SplitMix64, buf: &mut [u8]) {
    let range = match t.kind {
        Kind::Norm => NORM_RANGE,
        // A uniform [-a, a] has standard deviation a / sqrt(3).
        Kind::Matrix => WEIGHT_STD * 3f32.sqrt(),
    };
    let f16_bytes = |x: f32| half::f16::from_f32(x).to_le_bytes();
    match t.ty {
        GgmlType::F32 => {
            for c in buf.chunks_exact_mut(4) {
                c.copy_from_slice(&(rng.symmetric() * range).to_le_bytes());
            }
        }
        GgmlType::F16 => {
            for c in buf.chunks_exact_mut(2) {
                c.copy_from_slice(&f16_bytes(rng.symmetric() * range));
            }
        }
        GgmlType::Q8_0 => {
            // Uniform i8 in [-127, 127] has standard deviation ~73.3; ggml never emits -128.
            for block in buf.chunks_exact_mut(34) {
                let d = WEIGHT_STD / 73.3 * (1.0 + 0.5 * rng.symmetric());
                block[..2].copy_from_slice(&f16_bytes(d));
                rng.fill(&mut block[2..]);
                for q in &mut block[2..] {
                    if *q == 0x80 {
                        *q = 0x81;
                    }
                }
            }
        }
        GgmlType::Q4_0 => {
            // Uniform nibbles q - 8 in [-8, 7] have standard deviation ~4.6.
            for block in buf.chunks_exact_mut(18) {
                let d = WEIGHT_STD / 4.6 * (1.0 + 0.5 * rng.symmetric());
                block[..2].copy_from_slice(&f16_bytes(d));
                rng.fill(&mut block[2..]);
            }
        }
        other => unreachable!("synthetic models are never written in {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::GgufFile;
    use crate::model::Model;

    #[test]
    fn v1_parameter_counts_match_the_hub() {
        for (name, params) in [
            ("t5gemma-s-s", 312_517_632),
            ("t5gemma-b-b", 591_490_560),
            ("t5gemma-ml-ml", 2_200_345_344),
            ("t5gemma-xl-xl", 3_766_980_608),
            ("t5gemma-2b-2b", 5_596_853_760),
            ("t5gemma-9b-2b", 12_292_375_296),
            ("t5gemma-9b-9b", 20_333_401_088),
        ] {
            let m = SyntheticModel::new(name, GgmlType::Q4_0).unwrap();
            assert_eq!(m.n_params(), params, "{name}");
        }
    }

    #[test]
    fn unknown_preset_and_type_are_refused() {
        let err = SyntheticModel::new("t5gemma-3b-3b", GgmlType::Q4_0).unwrap_err();
        assert!(err.to_string().contains("t5gemma2-270m-270m"));
        assert!(SyntheticModel::new("t5gemma-s-s", GgmlType::BF16).is_err());
    }

    fn check_runs(m: &SyntheticModel, dir: &Path, input: &[u32]) {
        let (path, generated) = m.cached(dir, false).unwrap();
        assert!(generated);
        let model = Model::load(&path).unwrap();
        let (e, d) = m.stacks();
        assert_eq!(model.config().vocab_size, m.vocab());
        assert_eq!(model.config().encoder.n_layers, e.layers);
        assert_eq!(model.config().decoder.n_layers, d.layers);
        let what = format!("{} {}", m.preset.name, m.ty);
        let enc = model.encode(input).unwrap();
        assert!(enc.hidden.iter().all(|v| v.is_finite()), "{what}");
        let mut state = model.start_decoder(&enc).unwrap();
        let logits = model.decode(&mut state, &[2]).unwrap();
        assert!(logits.iter().all(|v| v.is_finite()), "{what}");
        assert!(!m.cached(dir, false).unwrap().1, "reused from the cache");
        assert!(m.remove_cached(dir).unwrap());
        assert!(!path.exists());
    }

    #[test]
    fn small_variants_load_as_models_in_every_type() {
        let dir = tempfile::tempdir().unwrap();
        for preset in ["t5gemma-s-s", "t5gemma2-270m-270m"] {
            for ty in TYPES {
                let m = SyntheticModel::new(preset, ty)
                    .unwrap()
                    .with_layers(1, 2)
                    .with_vocab(1024);
                check_runs(&m, dir.path(), &[5, 6, 7]);
            }
        }
        // The eoi row exists once the vocabulary reaches id 256000.
        let m = SyntheticModel::new("t5gemma2-270m-270m", GgmlType::Q4_0)
            .unwrap()
            .with_layers(1, 1)
            .with_vocab(256_032);
        check_runs(&m, dir.path(), &[5, 256_000, 7]);
        // Unbalanced: cross-attention reads the wider encoder.
        let m = SyntheticModel::new("t5gemma-9b-2b", GgmlType::Q4_0)
            .unwrap()
            .with_layers(1, 1)
            .with_vocab(1024);
        check_runs(&m, dir.path(), &[5, 6]);
    }

    #[test]
    fn files_are_reproducible_and_seeded() {
        let dir = tempfile::tempdir().unwrap();
        let m = SyntheticModel::new("t5gemma2-270m-270m", GgmlType::Q8_0)
            .unwrap()
            .with_layers(1, 1)
            .with_vocab(1024);
        let a = dir.path().join("a.gguf");
        let b = dir.path().join("b.gguf");
        let c = dir.path().join("c.gguf");
        m.write(&a).unwrap();
        m.write(&b).unwrap();
        m.clone().with_seed(7).write(&c).unwrap();
        let (a, b, c) = (
            std::fs::read(a).unwrap(),
            std::fs::read(b).unwrap(),
            std::fs::read(c).unwrap(),
        );
        assert_eq!(a, b);
        assert_eq!(a.len(), c.len());
        assert_ne!(a, c);
        let f = GgufFile::from_bytes(&a).unwrap();
        assert_eq!(f.tensor("token_embd.weight").unwrap().ty, GgmlType::Q8_0);
        assert!(
            f.tensor_info("token_embd_eoi.weight").is_none(),
            "vocab 1024 has no eoi id"
        );
        let q = f.tensor("dec.blk.0.ffn_up.weight").unwrap();
        for block in q.data.chunks_exact(34) {
            let d = half::f16::from_le_bytes([block[0], block[1]]).to_f32();
            assert!(d.is_finite() && d > 0.0 && d < 1e-3);
        }
    }
}
