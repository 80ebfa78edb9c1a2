//! `t5g-convert`: the standalone converter, Hugging Face T5Gemma checkpoint -> t5g GGUF.
//!
//! The conversion itself lives in `t5g::convert` (shared with `t5g convert`); this binary only
//! parses arguments and reports.

use clap::{Parser, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use t5g::convert::{convert, ConvertOptions};
use t5g::gguf::GgmlType;

/// Convert a Hugging Face T5Gemma / T5Gemma 2 checkpoint directory into one t5g GGUF file.
#[derive(Parser, Debug)]
#[command(name = "t5g-convert", version, about)]
struct Cli {
    /// Checkpoint directory (config.json, model.safetensors[.index.json], tokenizer.model).
    input: PathBuf,
    /// Output GGUF file.
    #[arg(short, long, value_name = "OUT.gguf")]
    output: PathBuf,
    /// Type of the 2-D weights (1-D tensors are always f32; q8_0/q4_0 fall back to f16 for
    /// rows that are not a multiple of 32).
    #[arg(long = "type", value_enum, default_value = "f16", value_name = "TYPE")]
    ty: WeightType,
    /// T5Gemma (v1) encoder sliding window: `hf` = |i-j| <= W (transformers 5.24),
    /// `original` = |i-j| < W (the JAX code the checkpoints were trained with).
    #[arg(long, value_enum, default_value = "hf")]
    encoder_window: EncoderWindow,
    /// Do not report progress on stderr.
    #[arg(long)]
    no_progress: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum WeightType {
    F32,
    F16,
    #[value(name = "q8_0")]
    Q8_0,
    #[value(name = "q4_0")]
    Q4_0,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum EncoderWindow {
    Hf,
    Original,
}

fn main() -> ExitCode {
    // Bad input must never surface as a backtrace; a bug still gets one `error:` line.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("error: internal error (please report): {info}");
    }));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help / --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{}", one_line(&e.render().to_string()));
            return ExitCode::from(2);
        }
    };
    let opts = ConvertOptions {
        input: cli.input,
        output: cli.output,
        ty: match cli.ty {
            WeightType::F32 => GgmlType::F32,
            WeightType::F16 => GgmlType::F16,
            WeightType::Q8_0 => GgmlType::Q8_0,
            WeightType::Q4_0 => GgmlType::Q4_0,
        },
        encoder_window_inclusive: matches!(cli.encoder_window, EncoderWindow::Hf),
        progress: !cli.no_progress,
    };
    let report = match std::panic::catch_unwind(|| convert(&opts)) {
        Ok(Ok(report)) => report,
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
        Err(_) => return ExitCode::from(1),
    };
    for note in &report.notes {
        eprintln!("note: {note}");
    }
    let types: Vec<String> = report
        .types
        .iter()
        .map(|(ty, n, bytes)| format!("{n} {ty} ({})", size(*bytes)))
        .collect();
    println!(
        "wrote {} ({}, {} tensors: {}; {} skipped; {})",
        opts.output.display(),
        report.architecture,
        report.tensors,
        types.join(", "),
        report.skipped.len(),
        size(report.output_bytes)
    );
    ExitCode::SUCCESS
}

/// clap's multi-line usage error as the one `error: ...` line scripts expect.
fn one_line(rendered: &str) -> String {
    let line = rendered
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
        .collect::<Vec<_>>()
        .join(" ");
    if line.starts_with("error:") {
        line
    } else {
        format!("error: {line}")
    }
}

fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b => format!("{:.1} KiB", b as f64 / 1024.0),
    }
}
