//! `kiln cp`: docker's `cp` between a container and the host, both ways,
//! through the same archive code as the API's (`container::archive`).

use super::{Error, open_store};
use kiln::container::{self, archive};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `kiln cp`.
#[derive(Debug, clap::Args)]
pub struct CpArgs {
    /// Keep the files' owners (uid and gid) as they are.
    #[arg(short = 'a', long)]
    archive: bool,
    /// Follow a symlink at the end of the source path.
    #[arg(short = 'L', long = "follow-link")]
    follow_link: bool,
    /// `CONTAINER:SRC_PATH` or a host path (`-`: a tar on stdin).
    source: String,
    /// `CONTAINER:DEST_PATH` or a host path (`-`: a tar on stdout).
    destination: String,
}

/// `CONTAINER:PATH` as its two parts; a host path (which may hold a
/// colon after a slash, `./a:b`) as None.
/// A pipe between the copy's two ends could not be made.
fn pipe_failed(source: std::io::Error) -> Error {
    Error::Io {
        action: "making",
        path: "a pipe".into(),
        source,
    }
}

fn container_path(arg: &str) -> Option<(&str, &str)> {
    if arg.starts_with('/') || arg.starts_with('.') {
        return None;
    }
    arg.split_once(':')
}

/// `kiln cp`: silent when done, as docker 20.10's.
pub fn cp(root: Option<PathBuf>, args: CpArgs) -> Result<ExitCode, Error> {
    match (
        container_path(&args.source),
        container_path(&args.destination),
    ) {
        (Some(_), Some(_)) => Err(Error::Usage(
            "copying between containers is not supported".into(),
        )),
        (None, None) => Err(Error::Usage(
            "must specify at least one container source (CONTAINER:PATH)".into(),
        )),
        (Some((name, path)), None) => {
            let store = open_store(root)?;
            let c = container::find(&store, name).map_err(super::container_error)?;
            let view = archive::open(&c).map_err(super::container_error)?;
            // The name on this side comes from the path as typed, never
            // from where a symlink in the container led.
            let top = archive::rebase_name(path);
            let mut path = path.to_string();
            let mut stat = view.stat(&path).map_err(super::container_error)?;
            if args.follow_link && !stat.link_target.is_empty() {
                path = stat.link_target.clone();
                stat = view.stat(&path).map_err(super::container_error)?;
            }
            if args.destination == "-" {
                let out = std::io::BufWriter::new(std::io::stdout().lock());
                let mut out = view.tar(&path, &top, out).map_err(super::container_error)?;
                out.flush()?;
                return Ok(ExitCode::SUCCESS);
            }
            let dest = Path::new(&args.destination);
            let contents = top == ".";
            let stat = archive::PathStat {
                name: top.clone(),
                ..stat
            };
            let (into, name) =
                archive::host_destination(dest, &stat, contents).map_err(Error::Container)?;
            // Through a pipe: the tar is read as it is written.
            let (reader, writer) = std::io::pipe().map_err(pipe_failed)?;
            let owner =
                (!args.archive).then(|| (kiln::sandbox::fs::euid(), kiln::sandbox::fs::egid()));
            std::thread::scope(|s| {
                let writing = s.spawn(|| {
                    let mut w = view.tar(&path, &top, std::io::BufWriter::new(writer))?;
                    w.flush().map_err(|source| container::ContainerError::Io {
                        action: "writing",
                        path: PathBuf::from("the archive"),
                        source,
                    })
                });
                let scratch = store.temp_path("cp");
                let unpacked = archive::unpack_on_host(reader, &top, &into, &name, owner, &scratch);
                let written = writing.join().unwrap_or_else(|_| {
                    Err(container::ContainerError::Invalid(
                        "the archive's writer failed".into(),
                    ))
                });
                written.and(unpacked).map_err(Error::Container)
            })?;
            Ok(ExitCode::SUCCESS)
        }
        (None, Some((name, path))) => {
            let store = open_store(root)?;
            let c = container::find(&store, name).map_err(super::container_error)?;
            let view = archive::open(&c).map_err(super::container_error)?;
            let opts = archive::PutOptions {
                no_overwrite_dir_non_dir: true,
                copy_uid_gid: args.archive,
            };
            let scratch = store.temp_path("cp");
            if args.source == "-" {
                view.put(path, std::io::stdin().lock(), opts, &scratch)
                    .map_err(super::container_error)?;
                return Ok(ExitCode::SUCCESS);
            }
            let src = Path::new(&args.source);
            let src_meta = std::fs::symlink_metadata(src)
                .map_err(|e| Error::Usage(format!("could not stat {}: {e}", src.display())))?;
            let base = src
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| ".".into());
            let contents = args.source.ends_with("/.") && src_meta.is_dir();
            // A symlink at DEST is followed, as docker's cp does.
            let mut path = path.to_string();
            if let Ok(s) = view.stat(&path)
                && !s.link_target.is_empty()
            {
                path = s.link_target;
            }
            let path = path.as_str();
            // Into the directory DEST, or as DEST in its parent (a
            // directory's contents: as DEST, merged when it exists).
            let (dir, name) = match view.stat(path) {
                Ok(s) if s.mode & (1 << 31) != 0 && !contents => (path.to_string(), base),
                Ok(_) if src_meta.is_dir() => {
                    return Err(Error::Usage(format!(
                        "cannot copy directory {} to a file: {path} is not a directory",
                        src.display()
                    )));
                }
                _ => {
                    let trimmed = path.trim_end_matches('/');
                    let (parent, last) = trimmed.rsplit_once('/').unwrap_or(("", trimmed));
                    let parent = if parent.is_empty() { "/" } else { parent };
                    (parent.to_string(), last.to_string())
                }
            };
            // Through a pipe: the tar is read as it is written.
            let (reader, writer) = std::io::pipe().map_err(pipe_failed)?;
            std::thread::scope(|s| {
                let writing = s.spawn(|| {
                    archive::host_tar(src, &name, std::io::BufWriter::new(writer))
                        .and_then(|mut w| w.flush())
                });
                let put = view
                    .put(&dir, reader, opts, &scratch)
                    .map_err(super::container_error);
                let written = writing
                    .join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("the archive's writer failed")));
                put?;
                written.map_err(|e| Error::Usage(format!("reading {}: {e}", src.display())))
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
