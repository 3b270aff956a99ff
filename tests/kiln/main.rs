//! kiln's integration tests: one binary that runs the real `kiln` command.
//!
//! `KILN_BLESS=1 cargo test` rewrites kiln's own golden files under
//! `fixtures/` from the current output (never the conformance data).

mod api;
mod attacks;
mod build;
mod buildkit;
mod check_golden;
mod cli;
mod compat;
mod conformance;
mod containers;
mod dockerpy;
mod doctor;
mod fuzz;
mod isolation;
mod networks;
mod parse_golden;
mod platforms;
mod realworld;
mod registry;
mod repro;
mod rootless;
mod run;
mod serve;
mod store;
mod util;
mod vm;
