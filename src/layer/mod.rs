//! Layers: a directory ⇄ an OCI layer tar, streamed, never held in memory.
//!
//! [`generate`] turns a directory (an overlay upper dir, later) into a
//! deterministic tar: entries sorted, numeric owners, no user or group names,
//! hardlinks written once and then as links, device nodes, FIFOs, xattrs
//! (`security.capability` included) as PAX records, and overlay whiteouts
//! (character device 0:0, `*.overlay.opaque` directories) as `.wh.<name>`
//! and `.wh..wh..opq` entries. With a clamp (`SOURCE_DATE_EPOCH`), later
//! mtimes become the clamp.
//!
//! [`apply`] unpacks a layer (plain, gzip or zstd, detected from its first
//! bytes) into a directory, either as an overlay lowerdir (whiteouts become
//! overlay whiteouts) or flattened onto what is there (whiteouts delete). It
//! refuses entries that would escape the directory: absolute names, `..`,
//! writes through a symlink that leads outside, hardlinks to outside.

mod apply;
mod generate;

pub use apply::{ApplyError, Mode, apply, unpack_snapshot};
pub use generate::{GenerateError, Options, generate};

use crate::store::Digest;
use sha2::{Digest as _, Sha256};
use std::io::{self, BufRead, BufReader, Read, Write};

/// The prefix that marks a whiteout entry in a layer tar.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// The entry that marks a directory as opaque (lower layers hidden).
pub const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";

/// How a layer blob is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

impl Compression {
    /// Detects the compression from a stream's first bytes.
    pub fn detect(prefix: &[u8]) -> Compression {
        if prefix.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if prefix.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// The OCI layer media type for this compression.
    pub fn oci_media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

/// Wraps `reader` in the decompressor its first bytes call for.
pub fn decompress<'a, R: Read + 'a>(reader: R) -> io::Result<(Compression, Box<dyn Read + 'a>)> {
    let mut buffered = BufReader::with_capacity(256 * 1024, reader);
    let kind = Compression::detect(buffered.fill_buf()?);
    let out: Box<dyn Read + 'a> = match kind {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buffered)?),
    };
    Ok((kind, out))
}

/// The diffID of a layer blob (plain, gzip or zstd): the sha256 of its
/// uncompressed tar, read to the end.
pub fn diff_id_of<R: Read>(reader: R) -> io::Result<Digest> {
    let (_, plain) = decompress(reader)?;
    HashingReader::new(plain).finish().map(|(d, _)| d)
}

/// A writer that hashes and counts what passes through it.
///
/// Writes are gathered into 1 MiB chunks; each chunk goes to `inner` on
/// the caller's thread and to sha256 on a thread of its own, so hashing
/// (about 250 MB/s a core where the CPU has no SHA instructions) overlaps
/// the walk and the writes instead of adding to them.
pub struct HashingWriter<W> {
    inner: W,
    chunk: Vec<u8>,
    size: u64,
    /// Full chunks to the hashing thread; emptied chunks come back.
    to_hasher: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    spare: std::sync::mpsc::Receiver<Vec<u8>>,
    hasher: Option<std::thread::JoinHandle<Sha256>>,
}

const CHUNK: usize = 1 << 20;

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        let (to_hasher, chunks) = std::sync::mpsc::sync_channel::<Vec<u8>>(2);
        let (give_back, spare) = std::sync::mpsc::channel::<Vec<u8>>();
        let hasher = std::thread::spawn(move || {
            let mut hasher = Sha256::new();
            for mut chunk in chunks {
                hasher.update(&chunk);
                chunk.clear();
                // The writer may be gone (finished): the chunk is dropped.
                let _ = give_back.send(chunk);
            }
            hasher
        });
        HashingWriter {
            inner,
            chunk: Vec::with_capacity(CHUNK),
            size: 0,
            to_hasher: Some(to_hasher),
            spare,
            hasher: Some(hasher),
        }
    }

    /// Writes the gathered chunk out and hands it to the hashing thread.
    fn pass_on(&mut self) -> io::Result<()> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        self.inner.write_all(&self.chunk)?;
        let next = self
            .spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(CHUNK));
        let full = std::mem::replace(&mut self.chunk, next);
        self.to_hasher
            .as_ref()
            .and_then(|t| t.send(full).ok())
            .ok_or_else(|| io::Error::other("the hashing thread stopped"))
    }

    /// The inner writer, the digest and the size of what was written.
    pub fn finish(mut self) -> io::Result<(W, Digest, u64)> {
        self.pass_on()?;
        self.inner.flush()?;
        drop(self.to_hasher.take());
        let hasher = self
            .hasher
            .take()
            .expect("finish is called once")
            .join()
            .map_err(|_| io::Error::other("the hashing thread panicked"))?;
        Ok((
            self.inner,
            Digest::sha256(hasher.finalize().as_slice()),
            self.size,
        ))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.chunk.len() + buf.len() > CHUNK {
            self.pass_on()?;
        }
        if buf.len() >= CHUNK {
            // A large write passes straight on, in one piece.
            self.chunk.extend_from_slice(buf);
            self.pass_on()?;
        } else {
            self.chunk.extend_from_slice(buf);
        }
        self.size += buf.len() as u64;
        Ok(buf.len())
    }

    /// Flushes only the inner writer: a partial chunk waits for `finish`
    /// (the digest is final only there).
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes and counts what passes through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    size: u64,
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    /// Reads what is left (a tar's trailing padding), then returns the
    /// digest and size of everything read.
    pub fn finish(mut self) -> io::Result<(Digest, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((Digest::sha256(self.hasher.finalize().as_slice()), self.size))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
