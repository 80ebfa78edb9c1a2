//! One function per subcommand.

use crate::CliError;
use clap::{Args, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use t5g::generate::{self, Flow};
use t5g::model::Model;

/// The subcommands.
#[derive(Subcommand)]
pub enum Command {
    /// Convert a Hugging Face checkpoint directory into one GGUF file.
    Convert(crate::convert_cmd::ConvertArgs),
    /// Show a model file's architecture, sizes, weight types and tokenizer.
    Info(InfoArgs),
    /// Generate from an input (greedy).
    Generate(GenerateArgs),
    /// Print encoder states and teacher-forced logits as JSON.
    Logits(LogitsArgs),
    /// Measure encoder and decoder throughput (on a file or a synthetic model).
    Bench(crate::bench::BenchArgs),
}

#[derive(Args)]
pub struct InfoArgs {
    /// The model file.
    model: PathBuf,
}

#[derive(Args)]
pub struct ThreadArgs {
    /// Worker threads (default: all cores).
    #[arg(short = 't', long)]
    threads: Option<usize>,
}

#[derive(Args)]
pub struct GenerateArgs {
    /// The model file.
    #[arg(short = 'm', long)]
    model: PathBuf,
    /// Encoder input as comma-separated token ids.
    #[arg(long, value_name = "IDS")]
    input_ids: String,
    /// Most tokens to generate.
    #[arg(short = 'n', long, default_value_t = 64)]
    max_new_tokens: usize,
    /// Greedy decoding (the default).
    #[arg(long)]
    greedy: bool,
    /// Print the generated ids, comma-separated, on one line.
    #[arg(long)]
    ids: bool,
    #[command(flatten)]
    threads: ThreadArgs,
}

#[derive(Args)]
pub struct LogitsArgs {
    /// The model file.
    #[arg(short = 'm', long)]
    model: PathBuf,
    /// Encoder input as comma-separated token ids.
    #[arg(long, value_name = "IDS")]
    input_ids: String,
    /// Teacher-forced decoder input, starting with the decoder start token.
    #[arg(long, value_name = "IDS")]
    decoder_ids: String,
    /// Print one JSON object (the only output format).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    threads: ThreadArgs,
}

/// Runs a parsed command.
pub fn run(command: Command) -> Result<(), CliError> {
    match command {
        Command::Convert(a) => Ok(crate::convert_cmd::run(a)?),
        Command::Info(a) => info(a),
        Command::Generate(a) => generate(a),
        Command::Logits(a) => logits(a),
        Command::Bench(a) => crate::bench::run(a),
    }
}

/// Upper bound on `-n`: far beyond any context, small enough that caches stay allocatable.
const MAX_NEW_TOKENS: usize = 1 << 16;

fn set_threads(t: &ThreadArgs) -> Result<(), CliError> {
    if let Some(n) = t.threads {
        if n == 0 || n > 1024 {
            return Err(CliError::Usage(format!(
                "--threads must be between 1 and 1024, got {n}"
            )));
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| CliError::Runtime(format!("cannot start {n} threads: {e}")))?;
    }
    Ok(())
}

/// Parses `5,6,7` into ids.
fn parse_ids(flag: &str, s: &str) -> Result<Vec<u32>, CliError> {
    let ids = s
        .split(',')
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<u32>()
                .map_err(|_| CliError::Usage(format!("{flag}: `{p}` is not a token id")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if ids.is_empty() {
        return Err(CliError::Usage(format!("{flag}: no token ids given")));
    }
    Ok(ids)
}

fn info(a: InfoArgs) -> Result<(), CliError> {
    let model = Model::load(&a.model)?;
    let cfg = model.config();
    let file = model.file();
    let mut out = String::new();
    use std::fmt::Write as _;
    let _ = writeln!(
        out,
        "file:         {} ({} bytes)",
        a.model.display(),
        file.file_size()
    );
    let _ = writeln!(out, "family:       {}", cfg.family.arch());
    if let Ok(Some(name)) = file.opt_str("general.name") {
        let _ = writeln!(out, "name:         {name}");
    }
    let _ = writeln!(out, "vocab:        {}", cfg.vocab_size);
    for (label, s) in [("encoder", &cfg.encoder), ("decoder", &cfg.decoder)] {
        let sliding = s
            .layer_kinds
            .iter()
            .filter(|k| **k == t5g::model::LayerKind::Sliding)
            .count();
        let _ = writeln!(
            out,
            "{label}:      {} layers ({} sliding, window {}), hidden {}, mlp {}, heads {}/{} kv, head_dim {}, qpas {}",
            s.n_layers, sliding, s.sliding_window, s.hidden, s.ffn, s.n_heads, s.n_kv_heads, s.head_dim, s.query_pre_attn_scalar
        );
        let _ = writeln!(
            out,
            "              rope theta {} (x{} linear) full, {} (x{}) sliding; attn softcap {}",
            s.rope_full.theta,
            s.rope_full.linear_factor,
            s.rope_sliding.theta,
            s.rope_sliding.linear_factor,
            s.attn_logit_softcapping
                .map_or("none".into(), |c| c.to_string())
        );
    }
    let _ = writeln!(
        out,
        "final softcap: {}",
        cfg.final_logit_softcapping
            .map_or("none".into(), |c| c.to_string())
    );
    if cfg.family == t5g::model::Family::T5Gemma {
        let _ = writeln!(
            out,
            "encoder window: {}",
            if cfg.encoder_window_inclusive {
                "|i-j| <= W (transformers 5.24)"
            } else {
                "|i-j| < W (original)"
            }
        );
    }
    let _ = writeln!(
        out,
        "decoder start: {}, eos: {:?}",
        cfg.decoder_start_token_id, cfg.eos_token_ids
    );
    let types: Vec<String> = model
        .tensor_types()
        .iter()
        .map(|(t, n)| format!("{n} {t}"))
        .collect();
    let _ = writeln!(
        out,
        "tensors:      {} ({})",
        file.tensors().len(),
        types.join(", ")
    );
    let _ = writeln!(
        out,
        "decode reads: {} bytes of weights per token",
        model.decode_weight_bytes_per_token()
    );
    if let Ok(Some(n)) = file.opt_usize("t5gemma2.vision_tensors_skipped") {
        let _ = writeln!(
            out,
            "vision:       {n} vision-tower/projector tensors skipped (text-only model)"
        );
    }
    match file.get_str_array("tokenizer.ggml.tokens") {
        Ok(tokens) => {
            let _ = writeln!(
                out,
                "tokenizer:    {} ({} pieces){}",
                file.opt_str("tokenizer.ggml.model")
                    .ok()
                    .flatten()
                    .unwrap_or("?"),
                tokens.len(),
                if file.get("tokenizer.chat_template").is_some() {
                    ", chat template"
                } else {
                    ""
                }
            );
        }
        Err(_) => {
            let _ = writeln!(out, "tokenizer:    none (token ids only)");
        }
    }
    print!("{out}");
    Ok(())
}

fn generate(a: GenerateArgs) -> Result<(), CliError> {
    set_threads(&a.threads)?;
    let input = parse_ids("--input-ids", &a.input_ids)?;
    if a.max_new_tokens == 0 || a.max_new_tokens > MAX_NEW_TOKENS {
        return Err(CliError::Usage(format!(
            "-n must be between 1 and {MAX_NEW_TOKENS}, got {}",
            a.max_new_tokens
        )));
    }
    let model = Model::load(&a.model)?;
    let stdout = std::io::stdout();
    let mut first = true;
    let mut on_token = |id: u32| {
        if a.ids {
            let mut out = stdout.lock();
            let _ = write!(out, "{}{id}", if first { "" } else { "," });
            let _ = out.flush();
            first = false;
        }
        Flow::Continue
    };
    let result = generate::greedy(&model, &input, a.max_new_tokens, &mut on_token)?;
    if a.ids {
        println!();
    } else {
        let ids: Vec<String> = result.ids.iter().map(|i| i.to_string()).collect();
        println!("{}", ids.join(","));
    }
    Ok(())
}

fn logits(a: LogitsArgs) -> Result<(), CliError> {
    set_threads(&a.threads)?;
    let input = parse_ids("--input-ids", &a.input_ids)?;
    let decoder = parse_ids("--decoder-ids", &a.decoder_ids)?;
    let model = Model::load(&a.model)?;
    let encoded = model.encode(&input)?;
    let mut state = model.start_decoder(&encoded)?;
    let logits = model.decode(&mut state, &decoder)?;
    let vocab = model.config().vocab_size;
    let rows = |v: &[f32], w: usize| -> Vec<Vec<f32>> { v.chunks(w).map(|r| r.to_vec()).collect() };
    let json = serde_json::json!({
        "encoder_last_hidden_state": rows(&encoded.hidden, encoded.width),
        "logits": rows(&logits, vocab),
    });
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, &json)
        .map_err(|e| CliError::Runtime(format!("writing JSON: {e}")))?;
    let _ = writeln!(out);
    Ok(())
}
