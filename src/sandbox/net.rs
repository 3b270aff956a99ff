//! Sockets in a container's network namespace (published ports, the DNS
//! resolver): made by a thread that has joined the namespace of the
//! container's init, so they belong to the container's network, loopback
//! included; and the copy between two sockets, by splice.

use std::net::{SocketAddr, TcpStream};
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

/// Connects to `addr` inside the network namespace of process `pid`.
pub fn connect_in(pid: u32, addr: SocketAddr) -> std::io::Result<TcpStream> {
    in_namespace(pid, move || {
        TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(5))
    })
}

/// Copies from `from` to `to` until `from` ends, through a pipe with
/// splice: the data stays in the kernel, so a published port moves bytes
/// at close to loopback speed. Returns the bytes moved.
pub fn splice_copy(from: &TcpStream, to: &TcpStream) -> std::io::Result<u64> {
    use nix::fcntl::{SpliceFFlags, splice};
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_MORE;
    const CHUNK: usize = 1 << 16;
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
