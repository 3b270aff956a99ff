//! Everything that needs `unsafe`, `nix` or `libc` lives here; the rest of
//! the crate compiles under `#![deny(unsafe_code)]`. Today this is the few
//! filesystem calls std does not offer; namespaces, mounts and process
//! spawning come with the container runtime.

pub mod fs;
