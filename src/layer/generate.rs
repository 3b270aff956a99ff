//! Directory → deterministic layer tar.

use super::{HashingWriter, OPAQUE_WHITEOUT, WHITEOUT_PREFIX};
use crate::sandbox::fs::{Dir, split_dev};
use crate::store::Digest;
use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{File, Metadata};
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use tar::{EntryType, Header};
use thiserror::Error;

/// Why a layer could not be generated.
#[derive(Debug, Error)]
pub enum GenerateError {
    /// Reading the directory failed.
    #[error("reading {path}: {source}")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Writing the tar failed.
    #[error("writing layer tar: {0}")]
    Write(#[source] io::Error),
    /// A file's name begins with `.wh.`, which a layer reserves for
    /// deletions (OCI whiteouts): written as is, applying the layer would
    /// delete instead of create.
    #[error(
        "{0}: a name beginning with .wh. cannot be put in a layer (it would mean a deletion, an OCI whiteout); rename it"
    )]
    WhiteoutName(String),
}

/// How to generate.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Clamp mtimes later than this (seconds since the epoch) to it.
    pub mtime_clamp: Option<u64>,
}

/// Xattrs that describe overlay state, not content: never put in a layer.
fn is_overlay_xattr(name: &str) -> bool {
    name.starts_with("trusted.overlay.") || name.starts_with("user.overlay.")
}

/// True when a directory's xattrs mark it opaque (overlayfs).
fn is_opaque(xattrs: &[(OsString, Vec<u8>)]) -> bool {
    xattrs.iter().any(|(k, v)| {
        (k == "trusted.overlay.opaque" || k == "user.overlay.opaque") && v.as_slice() == b"y"
    })
}

/// Writes the tar of `dir` to `out`; returns `out`, the diffID (sha256 of
/// the tar) and its size.
///
/// `dir` may be the upper directory of a container that still runs (a
/// commit with `--pause=false`, or a process the freezer missed): it is
/// walked through descriptors only, each entry held before it is stat'ed
/// and opened as what it was stat'ed as, so a name swapped for a symlink
/// never leads a read onto the host.
pub fn generate<W: Write>(
    dir: &Path,
    out: W,
    options: Options,
) -> Result<(W, Digest, u64), GenerateError> {
    let top = Dir::open(dir).map_err(|source| GenerateError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut walker = Walker {
        builder: tar::Builder::new(HashingWriter::new(out)),
        options,
        links: HashMap::new(),
        buf: Vec::new(),
        top: dir.to_path_buf(),
    };
    walker.walk(top)?;
    let hashing = walker.builder.into_inner().map_err(GenerateError::Write)?;
    hashing.finish().map_err(GenerateError::Write)
}

struct Walker<W: Write> {
    builder: tar::Builder<HashingWriter<W>>,
    options: Options,
    /// (device, inode) of files with several links → the first name written.
    links: HashMap<(u64, u64), String>,
    /// Regular files are read through this (allocated at the first one).
    buf: Vec<u8>,
    /// The directory walked (for messages).
    top: PathBuf,
}

/// The size of the walker's read buffer.
const READ_BUF: usize = 1 << 20;

/// A directory being written: its descriptor, its name in the tar with a
/// trailing `/` (empty for the top), and its names left, last first.
struct Frame {
    dir: Dir,
    prefix: String,
    left: Vec<OsString>,
}

impl<W: Write> Walker<W> {
    fn read_err(&self, rel: &str) -> impl FnOnce(io::Error) -> GenerateError + use<W> {
        let path = self.top.join(rel);
        move |source| GenerateError::Read { path, source }
    }

    fn frame(&self, dir: Dir, prefix: String) -> Result<Frame, GenerateError> {
        // Byte order: the same on every machine and locale.
        let mut left = dir.names().map_err(self.read_err(&prefix))?;
        left.reverse();
        Ok(Frame { dir, prefix, left })
    }

    /// Writes every entry below `top`, depth first in name order, without
    /// recursion (a tree's depth is bounded by memory, not by the stack).
    fn walk(&mut self, top: Dir) -> Result<(), GenerateError> {
        let mut stack = vec![self.frame(top, String::new())?];
        while let Some(frame) = stack.last_mut() {
            let Some(name) = frame.left.pop() else {
                stack.pop();
                continue;
            };
            let rel = format!("{}{}", frame.prefix, name.to_string_lossy());
            if name
                .as_encoded_bytes()
                .starts_with(WHITEOUT_PREFIX.as_bytes())
            {
                // Such a name in a layer deletes what it names when the
                // layer is applied; kiln would refuse its own image.
                return Err(GenerateError::WhiteoutName(rel));
            }
            let (held, meta) = match frame.dir.hold(&name) {
                Ok(h) => h,
                // Removed since the listing (a container still running).
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.read_err(&rel)(e)),
            };
            let ft = meta.file_type();
            if ft.is_char_device() && meta.rdev() == 0 {
                // An overlay whiteout: the name was deleted.
                let wh = format!(
                    "{}{WHITEOUT_PREFIX}{}",
                    frame.prefix,
                    name.to_string_lossy()
                );
                self.plain(&wh, &meta, EntryType::Regular, 0)?;
                continue;
            }
            if ft.is_dir() {
                let sub = held.open_dir().map_err(self.read_err(&rel))?;
                let xattrs = sub.own_xattrs().map_err(self.read_err(&rel))?;
                let dir_name = format!("{rel}/");
                self.entry(&dir_name, &meta, EntryType::Directory, &xattrs, Body::None)?;
                if is_opaque(&xattrs) {
                    self.plain(
                        &format!("{rel}/{OPAQUE_WHITEOUT}"),
                        &meta,
                        EntryType::Regular,
                        0,
                    )?;
                }
                let next = self.frame(sub, dir_name)?;
                stack.push(next);
                continue;
            }
            if ft.is_file() {
                if meta.nlink() > 1 {
                    let key = (meta.dev(), meta.ino());
                    if let Some(first) = self.links.get(&key).cloned() {
                        let mut header = self.header(&meta, EntryType::Link, 0);
                        self.builder
                            .append_link(&mut header, &rel, &first)
                            .map_err(GenerateError::Write)?;
                        continue;
                    }
                    self.links.insert(key, rel.clone());
                }
                let file = held.open_file().map_err(self.read_err(&rel))?;
                let xattrs = crate::sandbox::fs::file_xattrs(&file).map_err(self.read_err(&rel))?;
                self.entry(&rel, &meta, EntryType::Regular, &xattrs, Body::File(file))?;
                continue;
            }
            let kind = if ft.is_symlink() {
                EntryType::Symlink
            } else if ft.is_char_device() {
                EntryType::Char
            } else if ft.is_block_device() {
                EntryType::Block
            } else if ft.is_fifo() {
                EntryType::Fifo
            } else {
                // Sockets cannot be represented in a tar; Docker skips them too.
                continue;
            };
            let xattrs = frame.dir.xattrs(&name).map_err(self.read_err(&rel))?;
            let body = match kind {
                EntryType::Symlink => Body::Link(held.read_link().map_err(self.read_err(&rel))?),
                _ => Body::None,
            };
            self.entry(&rel, &meta, kind, &xattrs, body)?;
        }
        Ok(())
    }

    fn header(&self, meta: &Metadata, kind: EntryType, size: u64) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(meta.mode() & 0o7777);
        h.set_uid(u64::from(meta.uid()));
        h.set_gid(u64::from(meta.gid()));
        let mtime = u64::try_from(meta.mtime()).unwrap_or(0);
        h.set_mtime(
            self.options
                .mtime_clamp
                .map_or(mtime, |clamp| mtime.min(clamp)),
        );
        h.set_size(size);
        h
    }

    /// An entry with no content and no xattrs (whiteouts).
    fn plain(
        &mut self,
        name: &str,
        meta: &Metadata,
        kind: EntryType,
        size: u64,
    ) -> Result<(), GenerateError> {
        let mut h = self.header(meta, kind, size);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        self.builder
            .append_data(&mut h, name, io::empty())
            .map_err(GenerateError::Write)
    }

    fn entry(
        &mut self,
        name: &str,
        meta: &Metadata,
        kind: EntryType,
        xattrs: &[(OsString, Vec<u8>)],
        body: Body,
    ) -> Result<(), GenerateError> {
        let records: Vec<(String, &[u8])> = xattrs
            .iter()
            .map(|(k, v)| (k.to_string_lossy().into_owned(), v.as_slice()))
            .filter(|(k, _)| !is_overlay_xattr(k))
            .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v))
            .collect();
        if !records.is_empty() {
            self.builder
                .append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), *v)))
                .map_err(GenerateError::Write)?;
        }
        let size = if kind == EntryType::Regular {
            meta.len()
        } else {
            0
        };
        let mut h = self.header(meta, kind, size);
        match body {
            Body::Link(target) => self
                .builder
                .append_link(&mut h, name, &target)
                .map_err(GenerateError::Write),
            Body::File(file) => {
                // The size in the header must match what is read, even if the
                // file changes under us.
                if self.buf.is_empty() && size > 0 {
                    self.buf = vec![0; READ_BUF];
                }
                let mut padded = Exact {
                    inner: io::Read::take(file, size),
                    left: size,
                    buf: &mut self.buf,
                    pos: 0,
                    filled: 0,
                };
                self.builder
                    .append_data(&mut h, name, &mut padded)
                    .map_err(GenerateError::Write)
            }
            Body::None => {
                if matches!(kind, EntryType::Char | EntryType::Block) {
                    let (major, minor) = split_dev(meta.rdev());
                    h.set_device_major(u32::try_from(major).unwrap_or(0))
                        .map_err(GenerateError::Write)?;
                    h.set_device_minor(u32::try_from(minor).unwrap_or(0))
                        .map_err(GenerateError::Write)?;
                }
                self.builder
                    .append_data(&mut h, name, io::empty())
                    .map_err(GenerateError::Write)
            }
        }
    }
}

/// What an entry carries besides its header.
enum Body {
    None,
    /// A regular file's content, opened through its hold.
    File(File),
    /// A symlink's target.
    Link(PathBuf),
}

/// Reads exactly `left` bytes of a file through the walker's buffer: the
/// tar writer copies in 8 KiB pieces, and a read syscall per piece is a
/// quarter of a million of them per GiB of layer. A file that shrank while
/// being read is padded with zeros rather than corrupting the archive.
struct Exact<'b, R> {
    inner: R,
    left: u64,
    buf: &'b mut [u8],
    pos: usize,
    filled: usize,
}

impl<R: io::Read> io::Read for Exact<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.filled {
            if self.left == 0 {
                return Ok(0);
            }
            let want = self
                .buf
                .len()
                .min(usize::try_from(self.left).unwrap_or(usize::MAX));
            let mut n = self.inner.read(&mut self.buf[..want])?;
            if n == 0 {
                self.buf[..want].fill(0);
                n = want;
            }
            self.left -= n as u64;
            (self.pos, self.filled) = (0, n);
        }
        let n = out.len().min(self.filled - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
