//! The Dockerfile front end: text → syntax tree → typed instructions.
//!
//! Two layers, as in BuildKit. [`syntax`] is purely syntactic (lines,
//! continuations, directives, heredocs, exec vs shell form, `--flag` words as
//! text). [`instructions`] turns each node into a typed instruction with
//! validated flags and arguments. [`shell`] expands words; the planner calls
//! it per stage. [`lint`] holds the warnings `kiln check` reports.

pub mod chmod;
pub mod dump;
pub mod error;
pub mod flags;
mod grammar;
pub mod heredoc;
pub mod instructions;
pub mod json;
pub mod lint;
pub mod mount;
pub mod shell;
pub mod source;
pub mod syntax;

pub use error::{Error, ErrorKind};
pub use source::{Position, Source, Span};
pub use syntax::{Ast, Node, parse};
