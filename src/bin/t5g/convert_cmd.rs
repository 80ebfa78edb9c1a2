//! `convert`: shared by `t5g convert` and the standalone `t5g-convert` (which includes this
//! file), so the two spell every flag the same way.

use clap::{Args, ValueEnum};
use std::path::PathBuf;
use t5g::convert::{convert, ConvertOptions};
use t5g::gguf::GgmlType;

/// Convert a Hugging Face T5Gemma / T5Gemma 2 checkpoint directory into one GGUF file.
#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// Checkpoint directory (config.json, model.safetensors[.index.json], tokenizer.model).
    pub input: PathBuf,
    /// Output GGUF file.
    #[arg(short, long, value_name = "OUT.gguf")]
    pub output: PathBuf,
    /// Type of the 2-D weights (1-D tensors are always f32; q8_0/q4_0 fall back to f16 for
    /// rows that are not a multiple of 32).
    #[arg(long = "type", value_enum, default_value = "f16", value_name = "TYPE")]
    pub ty: WeightType,
    /// T5Gemma (v1) encoder sliding window: `hf` = |i-j| <= W (transformers 5.24),
    /// `original` = |i-j| < W (the JAX code the checkpoints were trained with).
    #[arg(long, value_enum, default_value = "hf")]
    pub encoder_window: EncoderWindow,
    /// Do not report progress on stderr.
    #[arg(long)]
    pub no_progress: bool,
}

/// `--type` values.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum WeightType {
    /// 32-bit floats.
    F32,
    /// IEEE half floats.
    F16,
    /// 8-bit blocks.
    #[value(name = "q8_0")]
    Q8_0,
    /// 4-bit blocks.
    #[value(name = "q4_0")]
    Q4_0,
}

/// `--encoder-window` values.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum EncoderWindow {
    /// |i-j| <= W, as transformers 5.24.
    Hf,
    /// |i-j| < W, as the original training code.
    Original,
}

/// Converts and prints a one-line report on stdout (notes on stderr).
pub fn run(args: ConvertArgs) -> t5g::Result<()> {
    let opts = ConvertOptions {
        input: args.input,
        output: args.output,
        ty: match args.ty {
            WeightType::F32 => GgmlType::F32,
            WeightType::F16 => GgmlType::F16,
            WeightType::Q8_0 => GgmlType::Q8_0,
            WeightType::Q4_0 => GgmlType::Q4_0,
        },
        encoder_window_inclusive: matches!(args.encoder_window, EncoderWindow::Hf),
        progress: !args.no_progress,
    };
    let report = convert(&opts)?;
    for note in &report.notes {
        eprintln!("note: {note}");
    }
    let types: Vec<String> = report
        .types
        .iter()
        .map(|(ty, n, bytes)| format!("{n} {ty} ({:.1} MB)", *bytes as f64 / 1e6))
        .collect();
    println!(
        "wrote {} ({}, {} tensors: {}; {} skipped; {:.1} MB)",
        opts.output.display(),
        report.architecture,
        report.tensors,
        types.join(", "),
        report.skipped.len(),
        report.output_bytes as f64 / 1e6
    );
    Ok(())
}

/// clap renders usage errors over several lines (message, usage, hints); the contract is one
/// `error:` line, so keep the message and fold it onto one line.
pub fn usage_error_line(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    let message = rendered.split("Usage:").next().unwrap_or_default();
    let line = message.split_whitespace().collect::<Vec<_>>().join(" ");
    format!("error: {}", line.strip_prefix("error: ").unwrap_or(&line))
}
