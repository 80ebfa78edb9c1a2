//! One function per subcommand.

use crate::gen_flags::GenerationFlags;
use crate::CliError;
use clap::{Args, Subcommand};
use std::io::{Read, Write};
use std::path::PathBuf;
use t5g::generate::{self, Flow, StopStrings};
use t5g::model::Model;
use t5g::tokenizer::{DecodeOptions, EncodeOptions};

/// The subcommands.
#[derive(Subcommand)]
pub enum Command {
    /// Convert a Hugging Face checkpoint directory into one GGUF file.
    Convert(crate::convert_cmd::ConvertArgs),
    /// Show a model file's architecture, sizes, weight types and tokenizer.
    Info(InfoArgs),
    /// Generate from text or token ids (greedy, sampling or beam search).
    Generate(GenerateArgs),
    /// Summarize a document (file, stdin, or a JSON-lines batch).
    Summarize(crate::summarize_cmd::SummarizeArgs),
    /// Tokenize standard input.
    Tokenize(TokenizeArgs),
    /// Print encoder states and teacher-forced logits as JSON.
    Logits(LogitsArgs),
    /// Download a Hugging Face checkpoint, convert it, and cache the GGUF.
    Pull(crate::pull::PullArgs),
    /// Measure encoder and decoder throughput (on a file or a synthetic model).
    Bench(crate::bench::BenchArgs),
}

#[derive(Args)]
pub struct InfoArgs {
    /// The model file.
    model: String,
    /// Also read every quantized block and check its scale is finite.
    #[arg(long)]
    verify: bool,
}

#[derive(Args, Debug)]
pub struct ThreadArgs {
    /// Worker threads (default: all cores).
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["prompt", "input_ids"])))]
pub struct GenerateArgs {
    /// The model file (or a pulled model name).
    #[arg(short = 'm', long)]
    model: String,
    /// Encoder input as text (needs a model with a tokenizer).
    #[arg(short = 'p', long)]
    prompt: Option<String>,
    /// Encoder input as comma-separated token ids.
    #[arg(long, value_name = "IDS")]
    input_ids: Option<String>,
    /// Recognize control tokens (`<start_of_turn>`, ...) written in the prompt.
    #[arg(long)]
    special: bool,
    /// Most tokens to generate.
    #[arg(short = 'n', long, default_value_t = 64)]
    max_new_tokens: usize,
    /// Print the generated ids, comma-separated, on one line (instead of text).
    #[arg(long)]
    ids: bool,
    #[command(flatten)]
    gen: GenerationFlags,
    #[command(flatten)]
    threads: ThreadArgs,
}

#[derive(Args)]
pub struct TokenizeArgs {
    /// The model file (or a pulled model name).
    #[arg(short = 'm', long)]
    model: String,
    /// Recognize control tokens written in the text.
    #[arg(long)]
    special: bool,
    /// Print ids comma-separated on one line (default: one `id<TAB>piece` per line).
    #[arg(long)]
    ids: bool,
    /// Put the BOS id first.
    #[arg(long)]
    bos: bool,
}

#[derive(Args)]
pub struct LogitsArgs {
    /// The model file (or a pulled model name).
    #[arg(short = 'm', long)]
    model: String,
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
        Command::Summarize(a) => crate::summarize_cmd::run(a),
        Command::Tokenize(a) => tokenize(a),
        Command::Logits(a) => logits(a),
        Command::Pull(a) => crate::pull::run(a),
        Command::Bench(a) => crate::bench::run(a),
    }
}

/// The path of a `-m` argument: a GGUF file, the name of a pulled model (`org/name[:type]`),
/// or a Hugging Face checkpoint directory (converted once, f16, into the cache).
pub fn model_path(arg: &str) -> Result<PathBuf, CliError> {
    let dir = std::path::Path::new(arg);
    if dir.is_dir() && dir.join("config.json").is_file() {
        return Ok(converted_checkpoint(dir)?);
    }
    Ok(t5g::hub::resolve_model(arg)?)
}

/// Converts a checkpoint directory into `<cache>/converted/`, reusing the result while it is
/// newer than every file of the checkpoint.
fn converted_checkpoint(dir: &std::path::Path) -> t5g::Result<PathBuf> {
    use std::hash::{Hash, Hasher};
    let dir = dir.canonicalize().map_err(|e| t5g::Error::io(dir, e))?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    dir.hash(&mut hasher);
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let out_dir = t5g::hub::cache_root()?.join("converted");
    std::fs::create_dir_all(&out_dir).map_err(|e| t5g::Error::io(&out_dir, e))?;
    let out = out_dir.join(format!("{name}-{:016x}-f16.gguf", hasher.finish()));
    let newest_source = std::fs::read_dir(&dir)
        .map_err(|e| t5g::Error::io(&dir, e))?
        .flatten()
        .filter_map(|e| e.metadata().ok()?.modified().ok())
        .max();
    let converted_at = std::fs::metadata(&out).ok().and_then(|m| m.modified().ok());
    if matches!((converted_at, newest_source), (Some(c), Some(s)) if c >= s) {
        return Ok(out);
    }
    eprintln!(
        "note: converting {} to {} (f16)",
        dir.display(),
        out.display()
    );
    let opts = t5g::convert::ConvertOptions::new(&dir, &out);
    t5g::convert::convert(&opts)?;
    Ok(out)
}

/// Applies `-t` to the global thread pool.
pub fn set_threads(t: &ThreadArgs) -> Result<(), CliError> {
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
    if ids.len() > t5g::model::MAX_INPUT_TOKENS {
        return Err(CliError::Usage(format!(
            "{flag}: {} token ids; at most {} are accepted",
            ids.len(),
            t5g::model::MAX_INPUT_TOKENS
        )));
    }
    Ok(ids)
}

fn info(a: InfoArgs) -> Result<(), CliError> {
    let path = model_path(&a.model)?;
    let model = Model::load(&path)?;
    let cfg = model.config();
    let file = model.file();
    let mut out = String::new();
    use std::fmt::Write as _;
    let _ = writeln!(
        out,
        "file:         {} ({} bytes)",
        path.display(),
        file.file_size()
    );
    let _ = writeln!(out, "family:       {}", cfg.family.arch());
    let _ = writeln!(
        out,
        "kernels:      {} (of {})",
        t5g::kernels::level().name(),
        t5g::kernels::supported_levels()
            .iter()
            .map(|l| l.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        out,
        "attention:    encoder {}, decoder f32",
        model.encoder_attention().name()
    );
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
    if a.verify {
        model.verify_weights()?;
        let _ = writeln!(out, "verified:     every quantized block scale is finite");
    }
    print!("{out}");
    Ok(())
}

fn generate(a: GenerateArgs) -> Result<(), CliError> {
    set_threads(&a.threads)?;
    let opts = a.gen.options(a.max_new_tokens)?;
    let explicit_ids = a
        .input_ids
        .as_deref()
        .map(|s| parse_ids("--input-ids", s))
        .transpose()?;
    let model = Model::load(model_path(&a.model)?)?;
    let input = match (explicit_ids, &a.prompt) {
        (Some(ids), _) => ids,
        (None, Some(text)) => {
            let tok = model.require_tokenizer()?;
            let ids = tok.encode(
                text,
                EncodeOptions {
                    add_bos: tok.add_bos_token(),
                    special: a.special,
                    ..Default::default()
                },
            );
            if ids.is_empty() {
                return Err(CliError::Usage("-p: the prompt is empty".into()));
            }
            ids
        }
        (None, None) => unreachable!("clap requires -p or --input-ids"),
    };
    // Text output needs a tokenizer; ids-only files print ids.
    let tokenizer = if a.ids { None } else { model.tokenizer() };
    let mut decoder = tokenizer.map(|t| t.stream_decoder(DecodeOptions::default()));
    let mut stop = StopStrings::new(&a.gen.stop);
    let stdout = std::io::stdout();
    let mut first = true;
    let mut failure = None;
    let mut on_token = |id: u32| {
        let mut out = stdout.lock();
        match &mut decoder {
            Some(d) => match d.push(id) {
                Ok(piece) => {
                    let (emit, flow) = stop.push(&piece);
                    let _ = out.write_all(emit.as_bytes());
                    let _ = out.flush();
                    return flow;
                }
                Err(e) => {
                    failure = Some(e);
                    return Flow::Stop;
                }
            },
            None => {
                let _ = write!(out, "{}{id}", if first { "" } else { "," });
                let _ = out.flush();
                first = false;
            }
        }
        Flow::Continue
    };
    generate::generate(&model, &input, &opts, &mut on_token)?;
    if let Some(e) = failure {
        return Err(e.into());
    }
    if let Some(d) = &mut decoder {
        let (emit, _) = stop.push(&d.finish());
        print!("{emit}{}", stop.finish());
    }
    println!();
    Ok(())
}

fn tokenize(a: TokenizeArgs) -> Result<(), CliError> {
    let model = Model::load(model_path(&a.model)?)?;
    let tok = model.require_tokenizer()?;
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| CliError::Runtime(format!("<stdin>: {e}")))?;
    let ids = tok.encode(
        &text,
        EncodeOptions {
            add_bos: a.bos,
            special: a.special,
            ..Default::default()
        },
    );
    let mut out = std::io::stdout().lock();
    if a.ids {
        let list: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        let _ = writeln!(out, "{}", list.join(","));
    } else {
        for id in ids {
            let _ = writeln!(out, "{id}\t{}", tok.token_piece(id).unwrap_or("?"));
        }
    }
    Ok(())
}

fn logits(a: LogitsArgs) -> Result<(), CliError> {
    set_threads(&a.threads)?;
    let input = parse_ids("--input-ids", &a.input_ids)?;
    let decoder = parse_ids("--decoder-ids", &a.decoder_ids)?;
    let model = Model::load(model_path(&a.model)?)?;
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
