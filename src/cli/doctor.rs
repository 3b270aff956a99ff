//! `kiln doctor`: what this host lets kiln do, each finding with its fix.

use super::Error;
use kiln::doctor::{Host, Level};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `kiln doctor`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// `json`: one object per finding, in a list.
    #[arg(long, value_parser = ["json"])]
    format: Option<String>,
}

/// Runs the checks against the store kiln would use (it is not opened,
/// nor made); exit 1 when something kiln needs does not work.
pub fn run(root: Option<PathBuf>, args: Args) -> Result<ExitCode, Error> {
    let store =
        root.unwrap_or_else(|| kiln::store::Store::default_root(kiln::sandbox::fs::is_root()));
    let findings = kiln::doctor::run(&Host::default(), &store);
    let mut out = String::new();
    match args.format.as_deref() {
        Some(_) => {
            out = serde_json::to_string_pretty(&findings).unwrap_or_default();
            out.push('\n');
        }
        None => {
            for f in &findings {
                let mark = match f.status {
                    Level::Ok => "ok  ",
                    Level::Warn => "warn",
                    Level::Fail => "FAIL",
                };
                out.push_str(&format!("{mark} {}: {}\n", f.check, f.detail));
                if let Some(fix) = &f.fix {
                    out.push_str(&format!("     fix: {fix}\n"));
                }
            }
        }
    }
    std::io::stdout().lock().write_all(out.as_bytes())?;
    Ok(match findings.iter().any(|f| f.status == Level::Fail) {
        true => ExitCode::FAILURE,
        false => ExitCode::SUCCESS,
    })
}
