//! kiln: a daemonless container image builder.
//!
//! The library holds every module; `src/main.rs` is a thin CLI over it.
//! Every `unsafe` block and raw syscall lives in `sandbox`.
#![deny(unsafe_code)]

pub mod api;
pub mod attest;
pub mod builder;
pub mod container;
pub mod context;
pub mod copier;
pub mod dockerfile;
pub mod doctor;
pub mod events;
pub mod image;
pub mod layer;
pub mod network;
pub mod plan;
pub mod progress;
pub mod registry;
pub mod runtime;
#[allow(unsafe_code)]
pub mod sandbox;
pub mod serve;
pub mod store;
pub mod units;
