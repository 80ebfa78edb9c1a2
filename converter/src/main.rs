//! `t5g-convert`: the standalone converter, Hugging Face T5Gemma checkpoint -> t5g GGUF.
//!
//! The conversion lives in `t5g::convert` and the argument handling in the `t5g` binary's
//! `convert_cmd.rs`, included here, so `t5g convert` and `t5g-convert` are the same command.

#[path = "../../src/bin/t5g/convert_cmd.rs"]
mod convert_cmd;

use clap::Parser;
use std::process::ExitCode;

/// Convert a Hugging Face T5Gemma / T5Gemma 2 checkpoint directory into one t5g GGUF file.
#[derive(Parser, Debug)]
#[command(name = "t5g-convert", version, about)]
struct Cli {
    #[command(flatten)]
    args: convert_cmd::ConvertArgs,
}

fn main() -> ExitCode {
    // Bad input must never surface as a backtrace; a bug still gets one `error:` line.
    std::panic::set_hook(Box::new(|info| {
        eprintln!(
            "error: internal error (please report): {}",
            info.to_string().replace('\n', " ")
        );
    }));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{}", convert_cmd::usage_error_line(&e));
            return ExitCode::from(2);
        }
    };
    match std::panic::catch_unwind(|| convert_cmd::run(cli.args)) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("error: {}", e.to_string().replace('\n', " "));
            ExitCode::from(1)
        }
        Err(_) => ExitCode::from(1),
    }
}
