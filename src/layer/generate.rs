//! Directory → deterministic layer tar.

use super::{HashingWriter, OPAQUE_WHITEOUT, WHITEOUT_PREFIX};
use crate::sandbox::fs::split_dev;
use crate::store::Digest;
use std::collections::HashMap;
use std::fs::{self, File, Metadata};
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

fn is_opaque(path: &Path) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|name| matches!(xattr::get(path, name), Ok(Some(v)) if v == b"y"))
}

/// Writes the tar of `dir` to `out`; returns `out`, the diffID (sha256 of
/// the tar) and its size.
pub fn generate<W: Write>(
    dir: &Path,
    out: W,
    options: Options,
) -> Result<(W, Digest, u64), GenerateError> {
    let mut walker = Walker {
        builder: tar::Builder::new(HashingWriter::new(out)),
        options,
        links: HashMap::new(),
        buf: Vec::new(),
    };
    walker.dir(dir, "")?;
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
}

/// The size of the walker's read buffer.
const READ_BUF: usize = 1 << 20;

impl<W: Write> Walker<W> {
    /// The names in `dir`, in byte order (the same on every machine and
    /// locale), as (path, name in the tar) pairs.
    fn children(dir: &Path, prefix: &str) -> Result<Vec<(PathBuf, String)>, GenerateError> {
        let read = |source| GenerateError::Read {
            path: dir.to_path_buf(),
            source,
        };
        let mut names: Vec<_> = fs::read_dir(dir)
            .map_err(read)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(read)?;
        names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
        Ok(names
            .into_iter()
            .map(|n| (dir.join(&n), format!("{prefix}{}", n.to_string_lossy())))
            .collect())
    }

    /// Writes every entry under `dir`, depth first in name order, without
    /// recursion: a tree's depth is bounded by memory, not by the stack.
    fn dir(&mut self, dir: &Path, prefix: &str) -> Result<(), GenerateError> {
        let mut todo = Self::children(dir, prefix)?;
        todo.reverse();
        while let Some((path, rel)) = todo.pop() {
            let (parent, name) = match rel.rsplit_once('/') {
                Some((p, n)) => (format!("{p}/"), n.to_string()),
                None => (String::new(), rel.clone()),
            };
            let meta = fs::symlink_metadata(&path).map_err(|source| GenerateError::Read {
                path: path.clone(),
                source,
            })?;
            let ft = meta.file_type();
            if ft.is_char_device() && meta.rdev() == 0 {
                // An overlay whiteout: the name was deleted.
                let wh = format!("{parent}{WHITEOUT_PREFIX}{name}");
                self.plain(&wh, &meta, EntryType::Regular, 0)?;
                continue;
            }
            if ft.is_dir() {
                self.entry(&path, &format!("{rel}/"), &meta, EntryType::Directory)?;
                if is_opaque(&path) {
                    self.plain(
                        &format!("{rel}/{OPAQUE_WHITEOUT}"),
                        &meta,
                        EntryType::Regular,
                        0,
                    )?;
                }
                let mut children = Self::children(&path, &format!("{rel}/"))?;
                children.reverse();
                todo.extend(children);
            } else if ft.is_symlink() {
                self.entry(&path, &rel, &meta, EntryType::Symlink)?;
            } else if ft.is_file() {
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
                self.entry(&path, &rel, &meta, EntryType::Regular)?;
            } else if ft.is_char_device() {
                self.entry(&path, &rel, &meta, EntryType::Char)?;
            } else if ft.is_block_device() {
                self.entry(&path, &rel, &meta, EntryType::Block)?;
            } else if ft.is_fifo() {
                self.entry(&path, &rel, &meta, EntryType::Fifo)?;
            }
            // Sockets cannot be represented in a tar; Docker skips them too.
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
        path: &Path,
        name: &str,
        meta: &Metadata,
        kind: EntryType,
    ) -> Result<(), GenerateError> {
        let read = |source| GenerateError::Read {
            path: path.to_path_buf(),
            source,
        };
        let mut xattrs: Vec<(String, Vec<u8>)> = Vec::new();
        for attr in xattr::list(path).map_err(read)? {
            let attr_name = attr.to_string_lossy().into_owned();
            if is_overlay_xattr(&attr_name) {
                continue;
            }
            if let Some(value) = xattr::get(path, &attr).map_err(read)? {
                xattrs.push((format!("SCHILY.xattr.{attr_name}"), value));
            }
        }
        if !xattrs.is_empty() {
            xattrs.sort();
            let records = xattrs.iter().map(|(k, v)| (k.as_str(), v.as_slice()));
            self.builder
                .append_pax_extensions(records)
                .map_err(GenerateError::Write)?;
        }
        let size = if kind == EntryType::Regular {
            meta.len()
        } else {
            0
        };
        let mut h = self.header(meta, kind, size);
        match kind {
            EntryType::Symlink => {
                let target = fs::read_link(path).map_err(read)?;
                self.builder
                    .append_link(&mut h, name, &target)
                    .map_err(GenerateError::Write)
            }
            EntryType::Regular => {
                let file = File::open(path).map_err(read)?;
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
            EntryType::Char | EntryType::Block => {
                let (major, minor) = split_dev(meta.rdev());
                h.set_device_major(u32::try_from(major).unwrap_or(0))
                    .map_err(GenerateError::Write)?;
                h.set_device_minor(u32::try_from(minor).unwrap_or(0))
                    .map_err(GenerateError::Write)?;
                self.builder
                    .append_data(&mut h, name, io::empty())
                    .map_err(GenerateError::Write)
            }
            _ => self
                .builder
                .append_data(&mut h, name, io::empty())
                .map_err(GenerateError::Write),
        }
    }
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
