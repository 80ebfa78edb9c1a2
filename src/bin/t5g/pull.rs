//! `pull`: download a checkpoint from the Hugging Face Hub, convert it, and cache the GGUF
//! (the work is [`t5g::hub::pull`]; this file parses flags and draws progress).

use crate::convert_cmd::WeightType;
use crate::CliError;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use t5g::gguf::GgmlType;
use t5g::hub::{self, Hub, PullOptions, PullOutcome, PullProgress, RepoId};

/// Download a checkpoint from the Hugging Face Hub (HF_ENDPOINT, HF_TOKEN), convert it, and
/// cache the GGUF under $T5G_CACHE (default ~/.cache/t5g); prints the file's path.
#[derive(Args, Debug)]
pub struct PullArgs {
    /// Hub repository id, `org/name` (for example google/t5gemma-2-270m-270m).
    #[arg(value_name = "REPO_ID")]
    repo: String,
    /// Type of the converted 2-D weights.
    #[arg(long = "type", value_enum, default_value = "q4_0", value_name = "TYPE")]
    ty: WeightType,
    /// Branch, tag or commit to download.
    #[arg(long, default_value = "main")]
    revision: String,
    /// Download and convert again even if the model is already in the cache.
    #[arg(long)]
    force: bool,
    /// Keep the raw checkpoint in the cache after converting (a failed pull then resumes
    /// from the files it completed).
    #[arg(long)]
    keep_download: bool,
    /// Do not report progress on stderr.
    #[arg(long)]
    no_progress: bool,
}

/// Files at least this large get a progress bar.
const BAR_BYTES: u64 = 8 << 20;

/// Progress on stderr: status lines and a bar per large file, only when stderr is a terminal
/// (so scripts and logs see just the result, or one `error:` line).
struct Bars {
    on: bool,
    bar: Option<ProgressBar>,
}

impl PullProgress for Bars {
    fn message(&mut self, msg: &str) {
        if self.on {
            eprintln!("{msg}");
        }
    }

    fn file_started(&mut self, file: &str, bytes: Option<u64>) {
        if !self.on || bytes.is_some_and(|b| b < BAR_BYTES) {
            return;
        }
        let bar = ProgressBar::with_draw_target(bytes, ProgressDrawTarget::stderr());
        let template = if bytes.is_some() {
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
        } else {
            "{msg} {bytes} {bytes_per_sec}"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(file.to_owned());
        self.bar = Some(bar);
    }

    fn file_progress(&mut self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
    }

    fn file_finished(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// Pulls, then prints the GGUF path on stdout.
pub fn run(a: PullArgs) -> Result<(), CliError> {
    let repo = RepoId::parse(&a.repo).map_err(|e| CliError::Usage(e.to_string()))?;
    hub::check_revision(&a.revision).map_err(|e| CliError::Usage(e.to_string()))?;
    let hub = Hub::from_env()?;
    let ty = match a.ty {
        WeightType::F32 => GgmlType::F32,
        WeightType::F16 => GgmlType::F16,
        WeightType::Q8_0 => GgmlType::Q8_0,
        WeightType::Q4_0 => GgmlType::Q4_0,
    };
    let terminal = std::io::stderr().is_terminal() && !a.no_progress;
    let opts = PullOptions {
        repo,
        revision: a.revision,
        ty,
        force: a.force,
        keep_download: a.keep_download,
        cache_root: hub::cache_root()?,
        convert_progress: terminal,
    };
    let mut bars = Bars {
        on: terminal,
        bar: None,
    };
    match hub::pull(&hub, &opts, &mut bars)? {
        PullOutcome::AlreadyPulled(path) => {
            eprintln!(
                "{}:{} is already pulled (use --force to download it again)",
                opts.repo, ty
            );
            println!("{}", path.display());
        }
        PullOutcome::Pulled {
            path,
            downloaded_bytes,
            report,
        } => {
            for note in &report.notes {
                eprintln!("note: {note}");
            }
            if terminal {
                eprintln!(
                    "downloaded {:.1} MB, wrote {:.1} MB ({} {}, {} tensors)",
                    downloaded_bytes as f64 / 1e6,
                    report.output_bytes as f64 / 1e6,
                    report.architecture,
                    ty,
                    report.tensors
                );
            }
            println!("{}", path.display());
        }
    }
    Ok(())
}
