//! Hugging Face T5Gemma checkpoint (safetensors + config.json + tokenizer.model) -> one t5g GGUF
//! file, as `docs/FORMAT.md` describes it.
//!
//! [`convert`] reads `config.json`, memory-maps the safetensors file(s), decides and validates
//! every output tensor (name, shape, type) before writing anything, then streams the tensors
//! one by one — converted in parallel over rows — into a temporary file that is renamed into
//! place only when complete. Both `t5g convert` and the standalone `t5g-convert` call it.

pub mod config;
mod encode;
mod plan;
pub mod sentencepiece;
mod tokenizer;
mod weights;

use crate::error::{Error, Result};
use crate::gguf::{GgmlType, GgufWriter, MetaValue};
use config::{Family, GenerationConfig, ModelConfig, StackConfig};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// What to convert, where to, and how.
#[derive(Clone, Debug)]
pub struct ConvertOptions {
    /// The Hugging Face checkpoint directory.
    pub input: PathBuf,
    /// The GGUF file to write.
    pub output: PathBuf,
    /// Type of the 2-D weights: f32, f16, q8_0 or q4_0 (1-D tensors are always f32).
    pub ty: GgmlType,
    /// v1 encoder sliding window: `true` = `|i-j| <= W` (transformers 5.24), `false` =
    /// `|i-j| < W` (the original JAX training code).
    pub encoder_window_inclusive: bool,
    /// Draw a progress bar on stderr (when it is a terminal, or as lines for big models).
    pub progress: bool,
}

impl ConvertOptions {
    /// Defaults: f16 weights, the transformers-5.24 window, no progress output.
    pub fn new(input: impl Into<PathBuf>, output: impl Into<PathBuf>) -> Self {
        ConvertOptions {
            input: input.into(),
            output: output.into(),
            ty: GgmlType::F16,
            encoder_window_inclusive: true,
            progress: false,
        }
    }
}

/// What a conversion did.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvertReport {
    /// `general.architecture` of the output (`t5gemma` or `t5gemma2`).
    pub architecture: String,
    /// Tensors written.
    pub tensors: usize,
    /// Checkpoint tensors deliberately left out (vision tower, tied copies).
    pub skipped: Vec<String>,
    /// Things the user should know (no tokenizer, padded vocabulary, type fallbacks, ...).
    pub notes: Vec<String>,
    /// Size of the written file.
    pub output_bytes: u64,
    /// Tensors written per output type, as `(type, count, bytes)`.
    pub types: Vec<(GgmlType, usize, u64)>,
}

/// Models above this many bytes of weights report progress even when stderr is not a terminal.
const LARGE_MODEL_BYTES: u64 = 50 << 20;

/// Converts a checkpoint directory into a GGUF file. On error nothing is left at `output`.
pub fn convert(opts: &ConvertOptions) -> Result<ConvertReport> {
    if !matches!(
        opts.ty,
        GgmlType::F32 | GgmlType::F16 | GgmlType::Q8_0 | GgmlType::Q4_0
    ) {
        return Err(Error::invalid(format!(
            "--type {}: the converter writes f32, f16, q8_0 or q4_0",
            opts.ty
        )));
    }
    let dir = opts.input.as_path();
    let meta = std::fs::metadata(dir).map_err(|e| Error::io(dir, e))?;
    if !meta.is_dir() {
        return Err(Error::format(
            dir,
            "not a directory (expected a Hugging Face checkpoint directory)",
        ));
    }
    check_output(dir, &opts.output)?;
    let cfg = ModelConfig::from_dir(dir)?;
    let generation = GenerationConfig::from_dir(dir)?.unwrap_or_default();
    let ck = weights::Checkpoint::open(dir)?;
    let plan = plan::plan(&cfg, &ck, opts.ty)?;
    let tok = tokenizer::load(dir, cfg.vocab_size, &cfg)?;

    let arch = cfg.family.arch();
    let mut notes = cfg.notes.clone();
    notes.extend(plan.notes.iter().cloned());
    let mut w = GgufWriter::new();
    let name = std::fs::canonicalize(dir)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    w.add_metadata("general.architecture", MetaValue::String(arch.into()));
    w.add_metadata("general.name", MetaValue::String(name));
    let file_type = match opts.ty {
        GgmlType::F32 => 0,
        GgmlType::F16 => 1,
        GgmlType::Q8_0 => 7,
        _ => 2,
    };
    w.add_metadata("general.file_type", MetaValue::U32(file_type));
    w.add_metadata("general.quantization_version", MetaValue::U32(2));
    let vocab = cfg.vocab_size;
    w.add_metadata(
        format!("{arch}.vocab_size"),
        u32_value("vocab_size", vocab)?,
    );

    // Token ids that steer generation.
    let eot = tok.as_ref().and_then(|t| t.eot_id);
    let mut eos: Vec<i64> = Vec::new();
    for id in generation
        .eos_token_ids
        .iter()
        .chain(&cfg.eos_token_ids)
        .copied()
        .chain(eot.map(i64::from))
    {
        if !eos.contains(&id) {
            eos.push(id);
        }
    }
    if eos.is_empty() {
        eos.push(1);
        notes.push("no eos_token_id in config.json or generation_config.json: using 1".into());
    }
    let start = generation
        .decoder_start_token_id
        .or(cfg.decoder_start_token_id)
        .or(generation.bos_token_id)
        .or(cfg.bos_token_id)
        .unwrap_or(2);
    let check_id = |what: &str, id: i64| -> Result<u32> {
        u32::try_from(id)
            .ok()
            .filter(|&i| (i as usize) < vocab)
            .ok_or_else(|| {
                Error::format(
                    dir.join("config.json"),
                    format!("{what} {id} is outside the vocabulary of {vocab}"),
                )
            })
    };
    let eos = eos
        .iter()
        .map(|&id| check_id("eos_token_id", id).map(|i| i as i32))
        .collect::<Result<Vec<_>>>()?;
    w.add_metadata(
        format!("{arch}.decoder_start_token_id"),
        MetaValue::U32(check_id("decoder_start_token_id", start)?),
    );
    w.add_metadata(format!("{arch}.eos_token_ids"), MetaValue::i32_array(eos));
    if cfg.family == Family::T5Gemma2 {
        w.add_metadata(
            format!("{arch}.vision_tensors_skipped"),
            u32_value("vision_tensors_skipped", plan.vision_skipped)?,
        );
        let eoi = cfg.eoi_token_id.unwrap_or(256000);
        w.add_metadata(
            format!("{arch}.eoi_token_id"),
            MetaValue::U32(check_id("eoi_token_index", eoi)?),
        );
        if !opts.encoder_window_inclusive {
            notes.push(
                "the encoder window switch applies to t5gemma (v1) only: ignored for t5gemma2"
                    .into(),
            );
        }
    }
    add_stack(&mut w, arch, "encoder", &cfg.encoder)?;
    add_stack(&mut w, arch, "decoder", &cfg.decoder)?;
    if cfg.family == Family::T5Gemma {
        w.add_metadata(
            "t5gemma.encoder.attention.sliding_window_inclusive",
            MetaValue::Bool(opts.encoder_window_inclusive),
        );
    }
    match tok {
        Some(tok) => {
            for (k, v) in tok.kv {
                w.add_metadata(k, v);
            }
            notes.extend(tok.notes);
        }
        None => notes.push("no tokenizer.model: ids-only file (no tokenizer.* keys)".into()),
    }

    let mut types: Vec<(GgmlType, usize, u64)> = Vec::new();
    for t in &plan.tensors {
        let size = w.add_tensor(&t.name, t.ty, &t.shape)? as u64;
        match types.iter_mut().find(|e| e.0 == t.ty) {
            Some(e) => {
                e.1 += 1;
                e.2 += size;
            }
            None => types.push((t.ty, 1, size)),
        }
    }

    let total: u64 = plan
        .tensors
        .iter()
        .map(|t| ck.tensors[&t.source].range.len() as u64)
        .sum();
    let mut progress = Progress::new(opts.progress, total);
    w.write_file(&opts.output, |i, out| {
        let t = &plan.tensors[i];
        let src = &ck.tensors[&t.source];
        progress.message(&t.name);
        encode::write_tensor(
            &t.source,
            src.dtype,
            ck.bytes(src),
            t.shape[0],
            t.ty,
            out,
            &mut |n| progress.advance(n),
        )
    })
    .inspect_err(|_| progress.abandon())?;
    progress.finish();
    let output_bytes = std::fs::metadata(&opts.output)
        .map_err(|e| Error::io(&opts.output, e))?
        .len();
    Ok(ConvertReport {
        architecture: arch.into(),
        tensors: plan.tensors.len(),
        skipped: plan.skipped,
        notes,
        output_bytes,
        types,
    })
}

fn u32_value(key: &str, v: usize) -> Result<MetaValue> {
    u32::try_from(v)
        .map(MetaValue::U32)
        .map_err(|_| Error::invalid(format!("config value {key} = {v} does not fit in u32")))
}

fn add_stack(w: &mut GgufWriter, arch: &str, stack: &str, s: &StackConfig) -> Result<()> {
    let p = format!("{arch}.{stack}");
    let u = |key: &str, v: usize| u32_value(key, v);
    for (key, hf_key, value) in [
        ("block_count", "num_hidden_layers", s.num_layers),
        ("embedding_length", "hidden_size", s.hidden_size),
        (
            "feed_forward_length",
            "intermediate_size",
            s.intermediate_size,
        ),
        ("attention.head_count", "num_attention_heads", s.num_heads),
        (
            "attention.head_count_kv",
            "num_key_value_heads",
            s.num_kv_heads,
        ),
        ("attention.key_length", "head_dim", s.head_dim),
        ("attention.value_length", "head_dim", s.head_dim),
    ] {
        w.add_metadata(format!("{p}.{key}"), u(hf_key, value)?);
    }
    w.add_metadata(
        format!("{p}.attention.query_pre_attn_scalar"),
        MetaValue::F32(s.query_pre_attn_scalar),
    );
    w.add_metadata(
        format!("{p}.attention.sliding_window"),
        u("sliding_window", s.sliding_window)?,
    );
    w.add_metadata(
        format!("{p}.attention.layer_types"),
        MetaValue::string_array(s.layer_types.iter().map(|t| t.name())),
    );
    w.add_metadata(
        format!("{p}.attention.layer_norm_rms_epsilon"),
        MetaValue::F32(s.rms_norm_eps),
    );
    if let Some(cap) = s.attn_logit_softcapping {
        w.add_metadata(format!("{p}.attn_logit_softcapping"), MetaValue::F32(cap));
    }
    if stack == "decoder" {
        if let Some(cap) = s.final_logit_softcapping {
            w.add_metadata(format!("{p}.final_logit_softcapping"), MetaValue::F32(cap));
        }
    }
    w.add_metadata(
        format!("{p}.rope.freq_base"),
        MetaValue::F32(s.rope_full.theta),
    );
    w.add_metadata(
        format!("{p}.rope.scaling.factor"),
        MetaValue::F32(s.rope_full.factor),
    );
    w.add_metadata(
        format!("{p}.rope.freq_base_swa"),
        MetaValue::F32(s.rope_sliding.theta),
    );
    w.add_metadata(
        format!("{p}.rope.scaling_swa.factor"),
        MetaValue::F32(s.rope_sliding.factor),
    );
    Ok(())
}

/// Refuses an output that would overwrite the checkpoint: the directory itself, or a file in
/// it named like one of its sources.
fn check_output(input: &Path, output: &Path) -> Result<()> {
    let refuse = |why: &str| {
        Err(Error::invalid(format!(
            "{}: refusing to write the output {why}",
            output.display()
        )))
    };
    if output.is_dir() {
        return refuse("onto a directory");
    }
    let Some(file_name) = output.file_name() else {
        return refuse("to a path without a file name");
    };
    let parent = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let parent = std::fs::canonicalize(parent).map_err(|e| Error::io(parent, e))?;
    let input = std::fs::canonicalize(input).map_err(|e| Error::io(input, e))?;
    if parent.join(file_name) == input {
        return refuse("onto the input directory");
    }
    let source_like = |dir: &Path, name: &std::ffi::OsStr| {
        let name = name.to_string_lossy();
        dir == input
            && (name.ends_with(".safetensors")
                || name.ends_with(".json")
                || name.ends_with(".jinja")
                || name == "tokenizer.model")
    };
    if source_like(&parent, file_name) {
        return refuse("over a file of the input checkpoint");
    }
    // An existing output may be a link into the checkpoint.
    if let Ok(real) = std::fs::canonicalize(output) {
        if let (Some(dir), Some(name)) = (real.parent(), real.file_name()) {
            if source_like(dir, name) {
                return refuse("over a file of the input checkpoint");
            }
        }
    }
    Ok(())
}

/// Progress on stderr: a bar on a terminal, a line per 10% otherwise (large models only).
enum Progress {
    Off,
    Bar(indicatif::ProgressBar),
    Lines { total: u64, done: u64, next: u64 },
}

impl Progress {
    fn new(wanted: bool, total: u64) -> Self {
        if !wanted || total == 0 {
            return Progress::Off;
        }
        if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(total);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg}",
            ) {
                bar.set_style(style);
            }
            Progress::Bar(bar)
        } else if total > LARGE_MODEL_BYTES {
            Progress::Lines {
                total,
                done: 0,
                next: 10,
            }
        } else {
            Progress::Off
        }
    }

    fn message(&mut self, name: &str) {
        if let Progress::Bar(bar) = self {
            bar.set_message(name.to_owned());
        }
    }

    fn advance(&mut self, n: u64) {
        match self {
            Progress::Off => {}
            Progress::Bar(bar) => bar.inc(n),
            Progress::Lines { total, done, next } => {
                *done += n;
                while *next <= 100 && *done * 100 >= *next * *total {
                    eprintln!(
                        "converting: {next}% ({} / {} MB)",
                        *done >> 20,
                        *total >> 20
                    );
                    *next += 10;
                }
            }
        }
    }

    fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }

    fn abandon(&self) {
        if let Progress::Bar(bar) = self {
            bar.abandon();
        }
    }
}
