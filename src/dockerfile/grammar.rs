//! The pest binding of `grammar/dockerfile.pest`.

use pest_derive::Parser;

/// Parser generated from `grammar/dockerfile.pest`.
#[derive(Parser)]
#[grammar = "../grammar/dockerfile.pest"]
pub(crate) struct DockerfileGrammar;
