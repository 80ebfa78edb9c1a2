//! `summarize`: a file, stdin, or a JSON-lines batch.

use crate::gen_flags::GenerationFlags;
use crate::CliError;
use clap::{Args, ValueEnum};
use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::PathBuf;
use t5g::generate::Flow;
use t5g::model::Model;
use t5g::summarize::{summarize, Progress, SummarizeOptions, SummaryLength};

/// Largest document read (bytes); larger inputs are refused rather than exhausting memory.
pub const MAX_INPUT_BYTES: usize = 256 << 20;

/// Summarize a document.
#[derive(Args, Debug)]
pub struct SummarizeArgs {
    /// The document (`-` or nothing: standard input).
    pub input: Option<PathBuf>,
    /// The model file (or a pulled model name).
    #[arg(short = 'm', long)]
    pub model: String,
    /// Summary length.
    #[arg(long, value_enum, default_value = "medium")]
    pub length: Length,
    /// Most tokens in the summary (default set by --length: 64 / 160 / 400).
    #[arg(short = 'n', long)]
    pub max_new_tokens: Option<usize>,
    /// Largest encoder input; longer documents are summarized in chunks, then the chunk
    /// summaries are summarized.
    #[arg(long, default_value_t = 2048, value_name = "N")]
    pub max_input_tokens: usize,
    /// Replace the prompt: `{text}` becomes the document, `{instruction}` the length instruction.
    #[arg(long, value_name = "TEMPLATE")]
    pub prompt_template: Option<String>,
    /// Print one JSON object (summary, token counts, timings) instead of streaming text.
    #[arg(long, conflicts_with = "jsonl")]
    pub json: bool,
    /// Batch mode: read `{"id":..,"text":..}` lines from this file (`-` for stdin) and write
    /// one JSON line per input.
    #[arg(long, value_name = "IN.jsonl", conflicts_with = "input")]
    pub jsonl: Option<PathBuf>,
    #[command(flatten)]
    pub gen: GenerationFlags,
    #[command(flatten)]
    pub threads: crate::commands::ThreadArgs,
}

/// `--length` values.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Length {
    /// One or two sentences.
    Short,
    /// A paragraph.
    Medium,
    /// Several paragraphs.
    Long,
}

/// Reads a whole document from a path or stdin, bounded and UTF-8 checked.
fn read_document(path: Option<&PathBuf>) -> Result<String, CliError> {
    let (name, mut reader): (String, Box<dyn Read>) = match path {
        None => ("<stdin>".into(), Box::new(std::io::stdin().lock())),
        Some(p) if p.as_os_str() == "-" => ("<stdin>".into(), Box::new(std::io::stdin().lock())),
        Some(p) => {
            if p.is_dir() {
                return Err(CliError::Runtime(format!(
                    "{}: is a directory",
                    p.display()
                )));
            }
            let f = std::fs::File::open(p)
                .map_err(|e| CliError::Runtime(format!("{}: {e}", p.display())))?;
            (p.display().to_string(), Box::new(f))
        }
    };
    let mut bytes = Vec::new();
    (&mut reader)
        .take(MAX_INPUT_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| CliError::Runtime(format!("{name}: {e}")))?;
    if bytes.len() > MAX_INPUT_BYTES {
        return Err(CliError::Runtime(format!(
            "{name}: larger than {} MiB",
            MAX_INPUT_BYTES >> 20
        )));
    }
    String::from_utf8(bytes).map_err(|e| {
        CliError::Runtime(format!(
            "{name}: not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })
}

/// Runs `summarize`.
pub fn run(a: SummarizeArgs) -> Result<(), CliError> {
    crate::commands::set_threads(&a.threads)?;
    let length = match a.length {
        Length::Short => SummaryLength::Short,
        Length::Medium => SummaryLength::Medium,
        Length::Long => SummaryLength::Long,
    };
    let max_new = a.max_new_tokens.unwrap_or(length.max_new_tokens());
    let generate = a.gen.options(max_new)?;
    if a.max_input_tokens < 32 || a.max_input_tokens > 1 << 20 {
        return Err(CliError::Usage(format!(
            "--max-input-tokens must be between 32 and {}, got {}",
            1 << 20,
            a.max_input_tokens
        )));
    }
    let opts = SummarizeOptions {
        length,
        generate,
        max_new_tokens_set: a.max_new_tokens.is_some(),
        max_input_tokens: a.max_input_tokens,
        prompt_template: a.prompt_template.clone(),
        stop_strings: a.gen.stop.clone(),
    };
    let model = Model::load(crate::commands::model_path(&a.model)?)?;
    let tokenizer = model.require_tokenizer()?;
    if let Some(batch) = &a.jsonl {
        return run_batch(&model, batch, &opts);
    }
    let text = read_document(a.input.as_ref())?;
    let bar = progress_bar();
    let mut on_progress = |p: Progress| {
        if let Some(bar) = &bar {
            bar.set_length(p.total as u64);
            bar.set_position(p.done as u64);
            bar.set_message(format!("round {}", p.round));
        }
    };
    let stdout = std::io::stdout();
    let stream = !a.json;
    let mut on_piece = |piece: &str| {
        if stream {
            let mut out = stdout.lock();
            let _ = out.write_all(piece.as_bytes());
            let _ = out.flush();
        }
        Flow::Continue
    };
    let summary = summarize(
        &model,
        tokenizer,
        &text,
        &opts,
        &mut on_piece,
        &mut on_progress,
    )?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if a.json {
        let json = serde_json::to_string(&summary).map_err(|e| CliError::Runtime(e.to_string()))?;
        println!("{json}");
    } else {
        println!();
    }
    Ok(())
}

fn progress_bar() -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} chunks {elapsed}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    Some(bar)
}

/// One JSON line per input line; a bad line gets an `error` field and the batch goes on.
fn run_batch(model: &Model, path: &PathBuf, opts: &SummarizeOptions) -> Result<(), CliError> {
    let tokenizer = model.require_tokenizer()?;
    let reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let f = std::fs::File::open(path)
            .map_err(|e| CliError::Runtime(format!("{}: {e}", path.display())))?;
        Box::new(std::io::BufReader::new(f))
    };
    let mut out = std::io::stdout().lock();
    for (n, line) in reader.split(b'\n').enumerate() {
        let line_no = n + 1;
        let line = line.map_err(|e| CliError::Runtime(format!("{}: {e}", path.display())))?;
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        let result = match parse_batch_line(&line) {
            Err(msg) => serde_json::json!({ "line": line_no, "error": msg }),
            Ok((id, text)) => match summarize(
                model,
                tokenizer,
                &text,
                opts,
                &mut |_| Flow::Continue,
                &mut |_| {},
            ) {
                Ok(s) => serde_json::json!({
                    "id": id, "line": line_no, "summary": s.text, "input_tokens": s.input_tokens,
                    "output_tokens": s.output_tokens, "chunks": s.chunks, "rounds": s.rounds, "stop": s.stop,
                    "encode_seconds": s.encode_seconds, "decode_seconds": s.decode_seconds,
                }),
                Err(e) => serde_json::json!({ "id": id, "line": line_no, "error": e.to_string() }),
            },
        };
        writeln!(out, "{result}").map_err(|e| CliError::Runtime(format!("stdout: {e}")))?;
        let _ = out.flush();
    }
    Ok(())
}

fn parse_batch_line(line: &[u8]) -> Result<(serde_json::Value, String), String> {
    let value: serde_json::Value =
        serde_json::from_slice(line).map_err(|e| format!("not JSON: {e}"))?;
    let obj = value
        .as_object()
        .ok_or("expected a JSON object with \"id\" and \"text\"")?;
    let id = obj.get("id").cloned().ok_or("missing \"id\"")?;
    let text = obj
        .get("text")
        .and_then(|t| t.as_str())
        .ok_or("missing string \"text\"")?;
    if text.len() > MAX_INPUT_BYTES {
        return Err(format!("text larger than {} MiB", MAX_INPUT_BYTES >> 20));
    }
    Ok((id, text.to_string()))
}
