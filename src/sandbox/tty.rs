//! `-t`: a pseudo-terminal between the host's terminal and the container.
//!
//! As runc's console socket does it: the container's init opens the pty in
//! the container's own devpts (so `tty` inside says `/dev/pts/0`) and sends
//! the master back over a unix socket; the host relays between its terminal
//! and the master. The host's terminal goes raw while the container runs; its
//! window size is passed on at start and on every SIGWINCH.

use nix::pty::{PtyMaster, Winsize, grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
use nix::sys::termios::{SetArg, Termios, cfmakeraw, tcgetattr, tcsetattr};
use std::fs::File;
use std::io::IoSlice;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;

nix::ioctl_read_bad!(get_winsize, nix::libc::TIOCGWINSZ, Winsize);
nix::ioctl_write_ptr_bad!(set_winsize, nix::libc::TIOCSWINSZ, Winsize);

/// The window size of the terminal on `fd`, if it is one.
fn window_size(fd: BorrowedFd<'_>) -> Option<Winsize> {
    let mut ws = Winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one Winsize into the pointer we own.
    unsafe { get_winsize(fd.as_raw_fd(), &mut ws) }
        .ok()
        .map(|_| ws)
}

/// Inside the container (PID 1, after pivot_root): opens a pty in the
/// container's devpts, sends its master over `socket`, returns the slave.
pub fn open_in_container(socket: RawFd) -> io::Result<OwnedFd> {
    let master: PtyMaster = posix_openpt(nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_NOCTTY)
        .map_err(io::Error::from)?;
    grantpt(&master).map_err(io::Error::from)?;
    unlockpt(&master).map_err(io::Error::from)?;
    let name = ptsname_r(&master).map_err(io::Error::from)?;
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_NOCTTY)
        .open(&name)?;
    let fds = [master.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    sendmsg::<()>(
        socket,
        &[IoSlice::new(b"pty")],
        &cmsg,
        MsgFlags::empty(),
        None,
    )
    .map_err(io::Error::from)?;
    Ok(OwnedFd::from(slave))
}

/// Receives the pty master the container's init sends over `socket`
/// (one descriptor, as every other passed between kiln's processes).
pub fn receive_master(socket: &UnixStream) -> io::Result<OwnedFd> {
    super::netns::receive_fd(socket)
}

/// Sets the window size of the pty whose master is `master` (docker's
/// resize: the container's processes get SIGWINCH).
pub fn resize(master: BorrowedFd<'_>, rows: u16, cols: u16) -> io::Result<()> {
    let ws = Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one Winsize we own.
    unsafe { set_winsize(master.as_raw_fd(), &ws) }
        .map(drop)
        .map_err(io::Error::from)
}

/// This process's terminal's size (rows, columns), if stdin is one.
pub fn terminal_size() -> Option<(u16, u16)> {
    window_size(io::stdin().as_fd()).map(|w| (w.ws_row, w.ws_col))
}

/// This process's terminal in raw mode until dropped (`kiln attach` to a
/// `-t` container: keys go to it as typed); nothing when stdin is no
/// terminal.
#[derive(Debug)]
pub struct RawMode(Option<Termios>);

impl RawMode {
    /// Makes the terminal on stdin raw, remembering how it was.
    pub fn enter() -> RawMode {
        let stdin = io::stdin();
        let saved = tcgetattr(stdin.as_fd()).ok();
        if let Some(t) = &saved {
            let mut raw = t.clone();
            cfmakeraw(&mut raw);
            let _ = tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
        }
        RawMode(saved)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            let _ = tcsetattr(io::stdin().as_fd(), SetArg::TCSANOW, t);
        }
    }
}

/// The host's side: the pty master received from the container.
pub struct Pty {
    master: OwnedFd,
    saved: Option<Termios>,
}

impl Pty {
    /// Receives the master from the container, sizes it like the host's
    /// terminal, and makes that terminal raw.
    pub fn receive(socket: &UnixStream) -> io::Result<Pty> {
        let master = receive_master(socket)?;
        let stdin = io::stdin();
        if let Some(ws) = window_size(stdin.as_fd()) {
            // SAFETY: TIOCSWINSZ reads one Winsize we own.
            let _ = unsafe { set_winsize(master.as_raw_fd(), &ws) };
        }
        let saved = tcgetattr(stdin.as_fd()).ok();
        if let Some(t) = &saved {
            let mut raw = t.clone();
            cfmakeraw(&mut raw);
            let _ = tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
        }
        Ok(Pty { master, saved })
    }

    /// Copies the container's output to stdout (until the pty closes) and,
    /// with `input`, stdin to the container.
    pub fn relay(self, input: bool) -> io::Result<()> {
        let Pty { master, saved } = self;
        let master = File::from(master);
        if input {
            let mut to = master.try_clone()?;
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut stdin = io::stdin().lock();
                while let Ok(n) = stdin.read(&mut buf) {
                    if n == 0 || to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
        let resize = master.try_clone()?;
        if let Ok(mut signals) =
            signal_hook::iterator::Signals::new([signal_hook::consts::SIGWINCH])
        {
            std::thread::spawn(move || {
                for _ in signals.forever() {
                    if let Some(ws) = window_size(io::stdin().as_fd()) {
                        // SAFETY: TIOCSWINSZ reads one Winsize we own.
                        let _ = unsafe { set_winsize(resize.as_raw_fd(), &ws) };
                    }
                }
            });
        }
        let mut from = master;
        let mut out = io::stdout();
        let mut buf = [0u8; 8192];
        loop {
            match from.read(&mut buf) {
                // EIO: every slave descriptor is closed, the container is done.
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    out.write_all(&buf[..n])?;
                    out.flush()?;
                }
            }
        }
        if let Some(t) = saved {
            let _ = tcsetattr(io::stdin().as_fd(), SetArg::TCSANOW, &t);
        }
        Ok(())
    }
}
