//! Connections into a container's network namespace (published ports):
//! the socket is made by a thread that has joined the namespace of the
//! container's init, so it belongs to the container's network, loopback
//! included, and carries data for the host side that accepted the client.

use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;

/// Connects to `addr` inside the network namespace of process `pid`.
pub fn connect_in(pid: u32, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
    // A thread of its own: joining a network namespace changes only the
    // calling thread, which ends once the socket is made.
    std::thread::spawn(move || {
        nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(std::io::Error::from)?;
        TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(5))
    })
    .join()
    .map_err(|_| std::io::Error::other("the connecting thread panicked"))?
}
