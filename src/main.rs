//! The `kiln` command: argument parsing and the one place where errors become
//! diagnostics and exit codes. Everything else lives in the library and `cli`.
#![deny(unsafe_code)]

mod cli;

use clap::Parser;
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(err) if err.is_broken_pipe() => ExitCode::SUCCESS,
        Err(err) => {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "{}", err.render(cli::color_stderr()));
            ExitCode::from(err.exit_code())
        }
    }
}
