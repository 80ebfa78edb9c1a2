//! `t5g bench`: whole-model throughput on a model file or a synthetic model of a released shape.

use crate::CliError;
use clap::Args;
use std::path::PathBuf;
use std::time::Instant;
use t5g::bench::{self, synthetic, BenchOptions, BenchReport};
use t5g::gguf::GgmlType;
use t5g::model::Model;

/// `t5g bench` arguments: exactly one of `-m` and `--synthetic`.
#[derive(Args)]
#[command(after_help = AFTER_HELP)]
pub struct BenchArgs {
    /// The model file (or use --synthetic).
    #[arg(short = 'm', long, value_name = "MODEL.gguf")]
    model: Option<PathBuf>,
    /// A released shape with random weights instead of a file.
    #[arg(long, value_name = "PRESET")]
    synthetic: Option<String>,
    /// Weight type of the synthetic model: f32, f16, q8_0 or q4_0.
    #[arg(long = "type", value_name = "TYPE", default_value = "q4_0")]
    weight_type: String,
    /// Overrides both stacks' layer counts of the synthetic model (quick runs).
    #[arg(long, value_name = "N")]
    layers: Option<usize>,
    /// Where synthetic models are cached.
    #[arg(long, value_name = "DIR")]
    synthetic_dir: Option<PathBuf>,
    /// Rewrite the cached synthetic model even if present.
    #[arg(long)]
    regenerate: bool,
    /// Delete the cached synthetic model of this preset and type, and exit without running.
    #[arg(long, conflicts_with = "regenerate")]
    remove_synthetic: bool,
    /// Encoder input length.
    #[arg(long, default_value_t = 512)]
    input_tokens: usize,
    /// Decoder steps (the first one is timed apart; decode tok/s covers the rest).
    #[arg(long, default_value_t = 64)]
    new_tokens: usize,
    /// Repeat the run and report the fastest encoder pass and decode loop.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Untimed encoder passes before the runs (a process's first pass faults in its buffers).
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Skip measuring the machine's read bandwidth and int8 peak.
    #[arg(long)]
    no_ceilings: bool,
    /// Worker threads (default: all cores).
    #[arg(short = 't', long)]
    threads: Option<usize>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

const AFTER_HELP: &str = "\
Encodes --input-tokens pseudo-random ids in one pass, then decodes --new-tokens steps greedily
forced (each step feeds the previous argmax; end of sequence never stops it). decode tok/s
excludes the first step, which is reported apart. --warmup untimed encoder passes come first
(the weights are read through once before them), then --runs timed ones; the fastest counts.
Ceilings (read bandwidth, int8 peak) are measured with the same threads.

Synthetic presets (random weights of the released shapes):
  t5gemma-s-s  t5gemma-b-b  t5gemma-l-l  t5gemma-ml-ml  t5gemma-xl-xl
  t5gemma-2b-2b  t5gemma-9b-2b  t5gemma-9b-9b  t5gemma2-270m-270m
  t5gemma2-1b-1b  t5gemma2-4b-4b   (these two are inferred from Gemma 3 1B / 4B, not
                                    read from released configs)
Each is written once per type and cached as
DIR/t5g-synthetic-g<generator version>-PRESET-TYPE.gguf, DIR = --synthetic-dir or
<temp dir>/t5g-synthetic; --regenerate rewrites it, --remove-synthetic deletes it.";

/// Upper bounds that keep a typo from allocating the machine away.
const MAX_INPUT_TOKENS: usize = 1 << 17;
const MAX_NEW_TOKENS: usize = 1 << 16;

/// Runs `t5g bench`.
pub fn run(args: BenchArgs) -> Result<(), CliError> {
    let usage = |m: String| Err(CliError::Usage(m));
    let synthetic_model = match (&args.model, &args.synthetic) {
        (Some(_), Some(_)) => {
            return usage("give either -m MODEL or --synthetic PRESET, not both".into())
        }
        (None, None) => {
            return usage(format!(
                "give -m MODEL or --synthetic PRESET (presets: {})",
                synthetic::preset_names()
            ))
        }
        (Some(_), None) => {
            if args.layers.is_some() || args.regenerate || args.remove_synthetic {
                return usage(
                    "--layers, --regenerate and --remove-synthetic need --synthetic".into(),
                );
            }
            None
        }
        (None, Some(name)) => {
            let ty = GgmlType::from_name(&args.weight_type)
                .filter(|t| synthetic::TYPES.contains(t))
                .ok_or_else(|| {
                    CliError::Usage(format!(
                        "--type: `{}` is not one of f32, f16, q8_0, q4_0",
                        args.weight_type
                    ))
                })?;
            let mut m = synthetic::SyntheticModel::new(name, ty)
                .map_err(|e| CliError::Usage(format!("--synthetic: {e}")))?;
            if let Some(n) = args.layers {
                if n == 0 || n > 1024 {
                    return usage(format!("--layers must be between 1 and 1024, got {n}"));
                }
                m = m.with_layers(n, n);
            }
            Some(m)
        }
    };
    let dir = args
        .synthetic_dir
        .clone()
        .unwrap_or_else(synthetic::default_dir);
    if let Some(m) = &synthetic_model {
        if args.remove_synthetic {
            let removed = m.remove_cached(&dir)?;
            eprintln!(
                "{} {}",
                if removed { "removed" } else { "no cached file" },
                dir.join(m.file_name()).display()
            );
            return Ok(());
        }
    }
    if args.input_tokens == 0 || args.input_tokens > MAX_INPUT_TOKENS {
        return usage(format!(
            "--input-tokens must be between 1 and {MAX_INPUT_TOKENS}, got {}",
            args.input_tokens
        ));
    }
    if args.new_tokens < 2 || args.new_tokens > MAX_NEW_TOKENS {
        return usage(format!(
            "--new-tokens must be between 2 and {MAX_NEW_TOKENS} (the first step is timed apart), got {}",
            args.new_tokens
        ));
    }
    if args.runs == 0 || args.runs > 100 {
        return usage(format!(
            "--runs must be between 1 and 100, got {}",
            args.runs
        ));
    }
    if args.warmup > 100 {
        return usage(format!(
            "--warmup must be between 0 and 100, got {}",
            args.warmup
        ));
    }
    if let Some(n) = args.threads {
        if n == 0 || n > 1024 {
            return usage(format!("--threads must be between 1 and 1024, got {n}"));
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| CliError::Runtime(format!("cannot start {n} threads: {e}")))?;
    }

    let path = match (&synthetic_model, &args.model) {
        (Some(m), _) => {
            if !args.json {
                eprintln!("synthetic model: {}", dir.join(m.file_name()).display());
            }
            let t = Instant::now();
            let (path, generated) = m.cached(&dir, args.regenerate)?;
            if generated && !args.json {
                eprintln!("generated in {:.1} s", t.elapsed().as_secs_f64());
            }
            path
        }
        (None, Some(p)) => p.clone(),
        (None, None) => unreachable!("checked above"),
    };
    let t = Instant::now();
    let model = Model::load(&path)?;
    let load_s = t.elapsed().as_secs_f64();
    let opts = BenchOptions {
        input_tokens: args.input_tokens,
        new_tokens: args.new_tokens,
        runs: args.runs,
        warmup: args.warmup,
        ceilings: !args.no_ceilings,
    };
    let mut report = bench::run(&model, &opts)?;
    report.load_s = Some(load_s);
    if args.json {
        let json = serde_json::to_string(&report)
            .map_err(|e| CliError::Runtime(format!("writing JSON: {e}")))?;
        println!("{json}");
    } else {
        print!("{}", table(&report));
    }
    Ok(())
}

fn table(r: &BenchReport) -> String {
    let gib = |b: f64| format!("{:.2} GiB", b / (1u64 << 30) as f64);
    let pct = |f: Option<f64>| f.map_or("n/a".into(), |f| format!("{:.0}%", 100.0 * f));
    let opt = |v: Option<f64>, unit: &str| v.map_or("n/a".into(), |v| format!("{v:.1} {unit}"));
    let mut rows = vec![
        ("model", r.preset.clone().unwrap_or_else(|| r.model.clone())),
        ("family / type", format!("{} / {}", r.family, r.weight_type)),
        ("file", gib(r.file_bytes as f64)),
        (
            "threads / kernel",
            format!(
                "{} / {}, {} encoder attention",
                r.threads, r.kernel, r.encoder_attention
            ),
        ),
        (
            "encode",
            format!(
                "{:.1} tok/s ({} tokens in {:.3} s; linear layers {:.1} GOPS = {} of int8 peak {})",
                r.encode_tokens_per_s,
                r.input_tokens,
                r.encode_s,
                r.encoder_linear_gops,
                pct(r.encoder_int8_peak_fraction),
                opt(r.int8_peak_gops, "GOPS"),
            ),
        ),
        (
            "encoder matmuls",
            format!(
                "{:.3} s alone: {:.1} GOPS = {} of int8 peak (the pass's other {:.0}%: attention, norms)",
                r.encoder_linear_only_s,
                r.encoder_linear_only_gops,
                pct(r.encoder_linear_only_peak_fraction),
                100.0 * (1.0 - r.encoder_linear_only_s / r.encode_s).max(0.0),
            ),
        ),
        ("cross k/v", format!("{:.3} s", r.cross_kv_s)),
        (
            "decode",
            format!(
                "{:.1} tok/s (steps 2..{}; first step {:.3} s; {} of bandwidth bound, {} /token at {})",
                r.decode_tokens_per_s,
                r.new_tokens,
                r.first_decode_step_s,
                pct(r.decode_bandwidth_fraction),
                gib(r.decode_weight_bytes_per_token as f64),
                opt(r.read_bandwidth_bytes_per_s.map(|b| b / 1e9), "GB/s"),
            ),
        ),
        ("peak RSS", r.peak_rss_bytes.map_or("n/a".into(), |b| gib(b as f64))),
        (
            "decoder weights",
            match r.huge_page_bytes {
                0 => "read from the file map (no huge pages, little free memory or T5G_HUGE_PAGES=0)".into(),
                b => format!("{} copied to huge pages at load", gib(b as f64)),
            },
        ),
    ];
    if let Some(l) = r.load_s {
        rows.insert(3, ("load", format!("{l:.3} s")));
    }
    rows.iter().map(|(k, v)| format!("{k:<17} {v}\n")).collect()
}
