//! The process's one tokio runtime. The CLI, `kiln serve` and the API run
//! on it, and library code that blocks (a build's base pulls, its cache
//! imports and exports, ADD's downloads, from the build's own threads)
//! runs its futures on it with [`block_on`]: connections one call makes
//! are the next call's (the registry clients' HTTP pools are kept per
//! runtime, see `registry::client`).
//!
//! One exception, on purpose: `sandbox::netlink` runs a small runtime on
//! a thread that has joined a container's network namespace, since a
//! netlink socket belongs to the namespace of the thread that opens it.

use std::future::Future;
use std::sync::OnceLock;
use tokio::runtime::{Handle, Runtime};

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// The process's runtime, made the first time it is asked for.
pub fn get() -> std::io::Result<&'static Runtime> {
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let made = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("kiln-rt")
        .build()?;
    // Two threads may race to make it: one wins, the other's is dropped
    // unused (outside any runtime, where dropping one is allowed).
    Ok(RUNTIME.get_or_init(|| made))
}

/// Where a thread that may block runs its futures: the runtime whose
/// context it is in (a `spawn_blocking` thread of the API's or a test's),
/// else the process's.
pub enum Blocking {
    /// The caller's runtime.
    Handle(Handle),
    /// The process's.
    Process(&'static Runtime),
}

/// The runtime this thread blocks on (see [`Blocking`]).
pub fn blocking() -> std::io::Result<Blocking> {
    match Handle::try_current() {
        Ok(handle) => Ok(Blocking::Handle(handle)),
        Err(_) => Ok(Blocking::Process(get()?)),
    }
}

impl Blocking {
    /// Runs `f` to completion. Must not be called from an async task (as
    /// any `block_on`).
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        match self {
            Blocking::Handle(h) => h.block_on(f),
            Blocking::Process(rt) => rt.block_on(f),
        }
    }
}

/// [`Blocking::block_on`] on this thread's [`blocking`] runtime.
pub fn block_on<F: Future>(f: F) -> std::io::Result<F::Output> {
    Ok(blocking()?.block_on(f))
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_runtime_for_every_caller_outside_one() {
        let a = super::get().unwrap() as *const _;
        let b = std::thread::spawn(|| super::get().unwrap() as *const _ as usize)
            .join()
            .unwrap();
        assert_eq!(a as usize, b);
        // Tasks spawned by one call are on the runtime the next call uses.
        let id = super::block_on(async { tokio::runtime::Handle::current().id() }).unwrap();
        let again = super::block_on(async { tokio::runtime::Handle::current().id() }).unwrap();
        assert_eq!(id, again);
    }
}
