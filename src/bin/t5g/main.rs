//! The `t5g` command line: thin wrappers over the library; no model logic lives here.

mod bench;
mod commands;

use clap::Parser;
use std::process::ExitCode;

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
            // clap renders several lines (usage, hints); the contract is one `error:` line.
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or("error: bad arguments");
            let line = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("error: {line}");
            return ExitCode::from(2);
        }
    };
    match commands::run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
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
