//! The build context: what `.dockerignore` leaves in, and content digests
//! of COPY sources. It never writes the context; the stat cache of its
//! digests is kept in the store.

pub mod digest;
pub mod ignore;

use std::path::Path;

/// The commit time (seconds since 1970) of the HEAD of the git checkout
/// `dir` is in (`--source-date-epoch=git`), read with the git CLI: the time
/// a CI step would otherwise compute with `git log -1 --format=%ct`.
pub fn git_commit_time(dir: &Path) -> Result<i64, String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["log", "-1", "--format=%ct", "HEAD"])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("running git: {e} (is git installed?)"))?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "{} has no git commit to take the time of: {}",
            dir.display(),
            why.trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse::<i64>()
        .map_err(|_| format!("git printed {:?} for the commit time", text.trim()))
}
