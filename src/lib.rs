//! kiln: a daemonless container image builder.
//!
//! The library holds every module; `src/main.rs` is a thin CLI over it.
#![deny(unsafe_code)]

pub mod context;
pub mod dockerfile;
