//! `kiln fsck`: verify every blob, reference and snapshot in the store.

use super::{Error, open_store};
use kiln::store::fsck;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `kiln fsck`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Checks the store; exit 1 when anything is wrong.
pub fn run(root: Option<PathBuf>, _args: Args) -> Result<ExitCode, Error> {
    let store = open_store(root)?;
    let report = fsck(&store)?;
    let mut out = String::new();
    for p in &report.problems {
        out.push_str(&format!("error: {p}\n"));
    }
    out.push_str(&format!(
        "{}: {} blobs, {} tags, {} snapshots checked; {} problems\n",
        store.root().display(),
        report.blobs,
        report.tags,
        report.snapshots,
        report.problems.len()
    ));
    std::io::stdout().lock().write_all(out.as_bytes())?;
    Ok(if report.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
