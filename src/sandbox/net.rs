//! Sockets in a container's network namespace (published ports, the DNS
//! resolver): made by a thread that has joined the namespace of the
//! container's init, so they belong to the container's network, loopback
//! included; and the copy between two sockets, by splice.

use std::net::TcpStream;
use std::os::fd::AsFd;

/// Runs `make` on a thread that joined the network namespace of `pid`:
/// sockets it makes belong to the container's network. A thread of its
/// own, because joining a network namespace changes only the calling
/// thread, which ends once the socket is made.
pub fn in_namespace<T: Send + 'static>(
    pid: u32,
    make: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
    std::thread::spawn(move || {
        nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(std::io::Error::from)?;
        make()
    })
    .join()
    .map_err(|_| std::io::Error::other("the namespace thread panicked"))?
}

/// TCP sockets made ahead of need in a container's network namespace by a
/// thread that lives there: a published port's connection then costs no
/// thread and no setns. The sockets (a few, made ahead) hold the
/// namespace until the maker is dropped.
#[derive(Debug)]
pub struct SocketMaker {
    made: std::sync::Mutex<std::sync::mpsc::Receiver<std::os::fd::OwnedFd>>,
}

impl SocketMaker {
    /// A maker in the network namespace of process `pid`.
    pub fn new(pid: u32) -> std::io::Result<SocketMaker> {
        use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
        let (tx, made) = std::sync::mpsc::sync_channel(4);
        let (joined_tx, joined) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let r = nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET);
            let ok = r.is_ok();
            let _ = joined_tx.send(r);
            if !ok {
                return;
            }
            // Ends once the maker is dropped (the send fails). A socket
            // that cannot be made now (descriptors all in use) is tried
            // again: the port works again once clients go.
            loop {
                match socket(
                    AddressFamily::Inet,
                    SockType::Stream,
                    SockFlag::SOCK_CLOEXEC,
                    None,
                ) {
                    Ok(fd) => {
                        if tx.send(fd).is_err() {
                            break;
                        }
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
                }
            }
        });
        joined
            .recv()
            .map_err(|_| std::io::Error::other("the namespace thread ended"))?
            .map_err(std::io::Error::from)?;
        Ok(SocketMaker {
            made: std::sync::Mutex::new(made),
        })
    }

    /// A socket of the namespace, not yet connected.
    pub fn socket(&self) -> std::io::Result<std::os::fd::OwnedFd> {
        self.made
            .lock()
            .map_err(|_| std::io::Error::other("the socket maker failed"))?
            .recv()
            .map_err(|_| std::io::Error::other("the namespace thread ended"))
    }
}

/// Connects `socket` (made by a [`SocketMaker`]) to `addr`.
pub fn connect(
    socket: std::os::fd::OwnedFd,
    addr: std::net::SocketAddrV4,
) -> std::io::Result<TcpStream> {
    nix::sys::socket::connect(
        std::os::fd::AsRawFd::as_raw_fd(&socket),
        &nix::sys::socket::SockaddrIn::from(addr),
    )?;
    Ok(TcpStream::from(socket))
}

/// Copies from `from` to `to` until `from` ends, through a pipe with
/// splice: the data stays in the kernel, so a published port moves bytes
/// at close to loopback speed. Returns the bytes moved.
pub fn splice_copy(from: &TcpStream, to: &TcpStream) -> std::io::Result<u64> {
    use nix::fcntl::{SpliceFFlags, splice};
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    // Not SPLICE_F_MORE: it corks the socket, holding a small answer back
    // for 200 ms in wait of more.
    let flags = SpliceFFlags::SPLICE_F_MOVE;
    // A bigger pipe moves more per system call: a fourth of the copy's
    // time at the default 64 KiB. Kept at the default when refused.
    const CHUNK: usize = 1 << 20;
    let _ = nix::fcntl::fcntl(&w, nix::fcntl::FcntlArg::F_SETPIPE_SZ(CHUNK as i32));
    let mut total = 0u64;
    loop {
        let n = splice(from, None, &w, None, CHUNK, flags)?;
        if n == 0 {
            return Ok(total);
        }
        let mut left = n;
        while left > 0 {
            let m = splice(&r, None, to, None, left, flags)?;
            if m == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            left -= m;
        }
        total += n as u64;
    }
}
