//! The `t5g` command line: thin wrappers over the library; no model logic lives here.

mod bench;
mod commands;
mod convert_cmd;
mod gen_flags;
mod pull;
mod summarize_cmd;

use clap::Parser;
use std::process::ExitCode;

/// mimalloc keeps freed blocks for reuse instead of returning large ones to the kernel: a
/// forward pass allocates and frees megabyte activations per layer, and with the system
/// allocator each of them came back as fresh pages (page faults, and munmap's TLB shootdowns
/// across threads), which made encoder speed vary by a third between identical runs.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Run Google's T5Gemma encoder-decoder models on CPUs.
#[derive(Parser)]
#[command(name = "t5g", version, about, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: commands::Command,
}

/// A failure, split by who is at fault: the caller's arguments (exit 2) or the run (exit 1).
pub enum CliError {
    /// Bad arguments.
    Usage(String),
    /// Anything that went wrong while running.
    Runtime(String),
    /// A bug: the panic hook has already printed the `error:` line.
    Panicked,
}

impl From<t5g::Error> for CliError {
    fn from(e: t5g::Error) -> Self {
        CliError::Runtime(e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            eprintln!("{}", convert_cmd::usage_error_line(&e));
            return ExitCode::from(2);
        }
    };
    // Bad input must end in an `error:` line, never a backtrace; a panic is a bug, and even
    // then the user gets one line.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!(
            "error: internal error{at}: {} (please report this)",
            msg.replace('\n', " ")
        );
    }));
    // A bad T5G_KERNEL is the caller's mistake: refuse it up front rather than warn later.
    match t5g::kernels::detect() {
        Ok(level) => t5g::kernels::set_level(level).expect("detect returns a supported level"),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    }
    if let Err(e) = t5g::AttentionPrecision::from_env() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let outcome = std::panic::catch_unwind(|| commands::run(cli.command));
    let outcome = outcome.unwrap_or(Err(CliError::Panicked));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Panicked) => ExitCode::from(1),
        Err(CliError::Usage(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(2)
        }
        Err(CliError::Runtime(msg)) => {
            eprintln!("error: {}", msg.replace('\n', " "));
            ExitCode::from(1)
        }
    }
}
