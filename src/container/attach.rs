//! A detached container's standard input and window size, reached by
//! whoever attaches (`docker run -i`, `docker attach`, the API's resize):
//! its monitor listens on `attach.sock` in the container's directory and
//! writes what clients send into the container's stdin (a pipe, or the
//! pty's master with `-t`). Output is not carried here: attached clients
//! follow the log, which the monitor writes as it reads.
//!
//! A client's messages are frames: one byte of kind, a big-endian u32
//! length, the payload. Kinds: [`DATA`] (bytes of input), [`CLOSE`] (the
//! client's input ended: the container's is closed with `StdinOnce`),
//! [`RESIZE`] (rows and columns, two big-endian u16).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Bytes of input.
const DATA: u8 = 0;
/// The client's input ended.
const CLOSE: u8 = 1;
/// The window's new size.
const RESIZE: u8 = 2;
/// The largest frame a client may send (a client's read buffer's worth).
const MAX_FRAME: u32 = 1 << 20;

/// The socket's name in the container's directory.
const SOCKET: &str = "attach.sock";

/// What the current run of the container takes input through.
#[derive(Debug, Default)]
pub(super) struct Input {
    /// Its stdin's writing end (a pipe, or a clone of the pty's master);
    /// None between runs and once closed.
    writer: Option<File>,
    /// The pty's master, for resizes.
    master: Option<OwnedFd>,
    /// A client's input ended with `StdinOnce`: later runs get none.
    closed: bool,
    /// The last size asked for: a run's pty gets it when it comes (a
    /// client resizes as soon as it started the container).
    size: Option<(u16, u16)>,
    /// Input sent before a tty's master came (a client sends as soon as
    /// it is attached, before the start): given to it when it comes.
    early: Vec<u8>,
}

/// The most input kept for a pty that is not there yet.
const MAX_EARLY: usize = 64 << 10;

/// The input of a container's current run, shared by its monitor's
/// attach server and the run.
pub(super) type Shared = Arc<Mutex<Input>>;

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Input> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sets the current run's input (`writer`) and pty (`master`).
pub(super) fn set(shared: &Shared, writer: Option<File>, master: Option<OwnedFd>) {
    let mut i = lock(shared);
    // Dropped when closed already: the container reads the end at once.
    if let Some(w) = writer.filter(|_| !i.closed) {
        let early = std::mem::take(&mut i.early);
        // Written beside: a pty nobody reads yet may not take it all now.
        if !early.is_empty()
            && let Ok(mut copy) = w.try_clone()
        {
            std::thread::spawn(move || copy.write_all(&early));
        }
        i.writer = Some(w);
    }
    if let Some(m) = master {
        if let Some((rows, cols)) = i.size {
            let _ = crate::sandbox::tty::resize(m.as_fd(), rows, cols);
        }
        i.master = Some(m);
    }
}

/// Forgets the run's input: it ended.
pub(super) fn clear(shared: &Shared) {
    let mut i = lock(shared);
    i.writer = None;
    i.master = None;
}

/// The socket's path, through the directory's descriptor: a store's path
/// can be longer than a unix socket's name may be (108 bytes).
fn through(dir: &File) -> String {
    use std::os::fd::AsRawFd;
    format!("/proc/self/fd/{}/{SOCKET}", dir.as_raw_fd())
}

/// Listens on the container's `attach.sock` (mode 0600) for the life of
/// the monitor; `stdin_once`: a client's [`CLOSE`] closes the input (not a
/// `tty`'s: its input ends with ^D).
pub(super) fn serve(dir: &Path, shared: Shared, stdin_once: bool, tty: bool) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let handle = File::open(dir)?;
    let _ = std::fs::remove_file(dir.join(SOCKET));
    let listener = UnixListener::bind(through(&handle))?;
    std::fs::set_permissions(dir.join(SOCKET), std::fs::Permissions::from_mode(0o600))?;
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let shared = shared.clone();
            std::thread::spawn(move || client(stream, &shared, stdin_once && !tty));
        }
    });
    Ok(())
}

/// Serves one attached client until it goes.
fn client(mut stream: UnixStream, shared: &Shared, stdin_once: bool) {
    let mut head = [0u8; 5];
    loop {
        if stream.read_exact(&mut head).is_err() {
            return;
        }
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]);
        if len > MAX_FRAME {
            return;
        }
        let mut payload = vec![0u8; len as usize];
        if stream.read_exact(&mut payload).is_err() {
            return;
        }
        match head[0] {
            DATA => {
                // Written through a copy of the writer, outside the lock:
                // a full pipe blocks this client only.
                let writer = {
                    let mut i = lock(shared);
                    if i.writer.is_none() && !i.closed && i.early.len() < MAX_EARLY {
                        i.early.extend_from_slice(&payload);
                    }
                    i.writer.as_ref().and_then(|w| w.try_clone().ok())
                };
                if let Some(mut w) = writer {
                    let _ = w.write_all(&payload);
                }
            }
            CLOSE if stdin_once => {
                let mut i = lock(shared);
                i.writer = None;
                i.early.clear();
                i.closed = true;
            }
            RESIZE if payload.len() == 4 => {
                let rows = u16::from_be_bytes([payload[0], payload[1]]);
                let cols = u16::from_be_bytes([payload[2], payload[3]]);
                let mut i = lock(shared);
                i.size = Some((rows, cols));
                if let Some(m) = &i.master {
                    let _ = crate::sandbox::tty::resize(m.as_fd(), rows, cols);
                }
            }
            _ => {}
        }
    }
}

/// Follows the output of the container's current run (or of its next one,
/// while it is created: clients attach before they start it) from now, or
/// from the log's start with `past`; hands each entry to `emit` until the
/// run ends, `emit` returns false, or `stop` says so (looked at between
/// reads, entries or not: a client gone while nothing is written).
pub fn follow_run(
    c: &super::Container,
    past: bool,
    stop: &dyn Fn() -> bool,
    mut emit: impl FnMut(&super::logs::Entry) -> bool,
) {
    use super::logs::Tail;
    let first = c.state();
    // What is in the log now is an earlier run's: not this attach's.
    let mut tail = match past {
        true => Tail::open(&c.dir),
        false => Tail::open_at_end(&c.dir),
    };
    // A container that ended before the attach has nothing more to say.
    let over = !first.is_running() && first.status != super::state::Status::Created;
    loop {
        if tail.is_none() {
            tail = Tail::open(&c.dir);
        }
        let st = c.state();
        let ended = !c.dir.exists()
            || (!st.is_running()
                && st.status != super::state::Status::Created
                && st.finished_at != first.finished_at);
        for e in tail.as_mut().map(Tail::more).unwrap_or_default() {
            if !emit(&e) {
                return;
            }
        }
        if ended || over || stop() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Docker's detach keys (`ctrl-p,ctrl-q` when None) as the bytes that end
/// an attach when a client types them.
pub fn detach_keys(spec: Option<&str>) -> Result<Vec<u8>, String> {
    let spec = spec.unwrap_or("ctrl-p,ctrl-q");
    let bad = || format!("Invalid escape keys ({spec}) provided");
    spec.split(',')
        .map(|key| match key.strip_prefix("ctrl-") {
            Some(c) if c.len() == 1 => match c.as_bytes()[0].to_ascii_lowercase() {
                l @ b'a'..=b'z' => Ok(l - b'a' + 1),
                b'@' => Ok(0),
                b'[' => Ok(27),
                b'\\' => Ok(28),
                b']' => Ok(29),
                b'^' => Ok(30),
                b'_' => Ok(31),
                _ => Err(bad()),
            },
            None if key.len() == 1 => Ok(key.as_bytes()[0]),
            _ => Err(bad()),
        })
        .collect()
}

/// Finds the detach keys typed in a client's input: what is held back
/// while it may be their start, and whether they were all typed.
#[derive(Debug, Default)]
pub struct Escape {
    keys: Vec<u8>,
    held: Vec<u8>,
}

impl Escape {
    /// Looks for `keys` (none: never detaches).
    pub fn new(keys: Vec<u8>) -> Escape {
        Escape {
            keys,
            held: Vec::new(),
        }
    }

    /// The bytes of `chunk` to pass on, and whether the keys were typed
    /// (what follows them is not passed on).
    pub fn scan(&mut self, chunk: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(chunk.len());
        for &b in chunk {
            if self.keys.is_empty() {
                out.push(b);
                continue;
            }
            if b == self.keys[self.held.len()] {
                self.held.push(b);
                if self.held.len() == self.keys.len() {
                    self.held.clear();
                    return (out, true);
                }
                continue;
            }
            out.append(&mut self.held);
            match b == self.keys[0] {
                true => self.held.push(b),
                false => out.push(b),
            }
        }
        (out, false)
    }

    /// What is held back at the input's end (a start of the keys that
    /// never finished): the input's own bytes.
    pub fn rest(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.held)
    }
}

/// A client of a running container's monitor: sends it input and sizes.
#[derive(Debug)]
pub struct Attached {
    stream: UnixStream,
}

impl Attached {
    /// Connects to the monitor of the container in `dir`; fails while it
    /// has none (not started yet, or ended).
    pub fn connect(dir: &Path) -> io::Result<Attached> {
        let handle = File::open(dir)?;
        Ok(Attached {
            stream: UnixStream::connect(through(&handle))?,
        })
    }

    fn frame(&mut self, kind: u8, payload: &[u8]) -> io::Result<()> {
        for chunk in payload.chunks(MAX_FRAME as usize) {
            let mut out = Vec::with_capacity(chunk.len() + 5);
            out.push(kind);
            out.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
            out.extend_from_slice(chunk);
            self.stream.write_all(&out)?;
        }
        if payload.is_empty() {
            self.stream.write_all(&[kind, 0, 0, 0, 0])?;
        }
        Ok(())
    }

    /// Bytes for the container's standard input.
    pub fn send(&mut self, data: &[u8]) -> io::Result<()> {
        match data.is_empty() {
            true => Ok(()),
            false => self.frame(DATA, data),
        }
    }

    /// This client's input ended.
    pub fn close_input(&mut self) -> io::Result<()> {
        self.frame(CLOSE, &[])
    }

    /// The container's pty is `rows` × `cols` from now on.
    pub fn resize(&mut self, rows: u16, cols: u16) -> io::Result<()> {
        let mut p = rows.to_be_bytes().to_vec();
        p.extend_from_slice(&cols.to_be_bytes());
        self.frame(RESIZE, &p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_reaches_the_writer_and_close_closes_it_only_once_asked() {
        let dir = tempfile::tempdir().unwrap();
        let shared: Shared = Arc::default();
        serve(dir.path(), shared.clone(), true, false).unwrap();
        let (mut r, w) = std::io::pipe().unwrap();
        set(&shared, Some(File::from(OwnedFd::from(w))), None);
        let mut a = Attached::connect(dir.path()).unwrap();
        a.send(b"hello\n").unwrap();
        let mut got = [0u8; 6];
        r.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello\n");
        a.close_input().unwrap();
        // The writer is dropped: the reader sees the end (within seconds,
        // or the test fails rather than hangs).
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut rest = Vec::new();
            let _ = tx.send(r.read_to_end(&mut rest).map(|_| rest));
        });
        let rest = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("the input was not closed")
            .unwrap();
        assert!(rest.is_empty());
        let mode = std::fs::metadata(dir.path().join(SOCKET)).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_ttys_early_input_waits_for_it_and_close_does_not_end_it() {
        let dir = tempfile::tempdir().unwrap();
        let shared: Shared = Arc::default();
        serve(dir.path(), shared.clone(), true, true).unwrap();
        let mut a = Attached::connect(dir.path()).unwrap();
        a.send(b"typed ahead").unwrap();
        a.close_input().unwrap();
        // Served in order: once a resize is seen, so were the frames before.
        a.resize(3, 4).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while lock(&shared).size.is_none() {
            assert!(std::time::Instant::now() < deadline);
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let (mut r, w) = std::io::pipe().unwrap();
        set(&shared, Some(File::from(OwnedFd::from(w))), None);
        let mut got = [0u8; 11];
        r.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"typed ahead");
        assert!(lock(&shared).writer.is_some(), "a tty's CLOSE closed it");
    }

    #[test]
    fn detach_keys_are_docker_s() {
        assert_eq!(detach_keys(None).unwrap(), vec![16, 17]);
        assert_eq!(
            detach_keys(Some("ctrl-a,x,ctrl-@")).unwrap(),
            vec![1, b'x', 0]
        );
        assert_eq!(
            detach_keys(Some("ctrl-")).unwrap_err(),
            "Invalid escape keys (ctrl-) provided"
        );
    }

    #[test]
    fn typed_detach_keys_end_the_input_and_a_false_start_is_passed_on() {
        let mut e = Escape::new(vec![16, 17]);
        assert_eq!(e.scan(b"ab\x10"), (b"ab".to_vec(), false));
        // ctrl-p then not ctrl-q: both are the input's.
        assert_eq!(e.scan(b"c"), (b"\x10c".to_vec(), false));
        assert_eq!(e.scan(b"\x10\x10"), (b"\x10".to_vec(), false));
        assert_eq!(e.scan(b"\x11rest"), (Vec::new(), true));
        // Scanned on after a match, it starts over.
        assert_eq!(e.scan(b"\x10"), (Vec::new(), false));
        assert_eq!(e.rest(), b"\x10");
        assert_eq!(
            Escape::new(Vec::new()).scan(b"\x10\x11"),
            (b"\x10\x11".to_vec(), false)
        );
    }

    #[test]
    fn without_stdin_once_the_input_stays_open() {
        let dir = tempfile::tempdir().unwrap();
        let shared: Shared = Arc::default();
        serve(dir.path(), shared.clone(), false, false).unwrap();
        let (mut r, w) = std::io::pipe().unwrap();
        set(&shared, Some(File::from(OwnedFd::from(w))), None);
        // One connection, so its frames are served in order: the close
        // comes first, and the input is still open after it.
        let mut a = Attached::connect(dir.path()).unwrap();
        a.close_input().unwrap();
        a.send(b"again").unwrap();
        let mut got = [0u8; 5];
        r.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"again");
    }
}
