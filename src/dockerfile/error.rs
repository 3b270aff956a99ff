//! Errors of the Dockerfile front end. Every error carries the span it is
//! about; the CLI renders it with the source line and a caret.

use super::source::Span;
use thiserror::Error;

/// What went wrong while reading a Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ErrorKind {
    /// No instruction at all (empty, only comments or directives).
    #[error("file with no instructions")]
    NoInstructions,
    /// A parser directive given twice.
    #[error("only one {0} parser directive can be used")]
    DuplicateDirective(String),
    /// `# escape=` with something other than `\` or `` ` ``.
    #[error("invalid escape token '{0}' does not match ` or \\")]
    InvalidEscape(String),
    /// A JSON array with an element that is not a string.
    #[error("when using JSON array syntax, arrays must be comprised of strings only")]
    NotStringArray,
    /// Old-form ENV/LABEL with a name and no value.
    #[error("{0} must have two arguments")]
    MissingValue(String),
    /// New-form ENV/LABEL word without `=`.
    #[error("Syntax error - can't find = in {0}. Must be of the form: name=value")]
    MissingEquals(String),
    /// A heredoc whose terminator never came.
    #[error("unterminated heredoc {0}")]
    UnterminatedHeredoc(String),
    /// A heredoc opener the shell lexer could not read.
    #[error("invalid heredoc: {0}")]
    BadHeredoc(String),
    /// ONBUILD nested deeper than kiln follows.
    #[error("ONBUILD nested too deeply")]
    TooDeep,
    /// An error of the typed layer (unknown instruction, bad flag, ...).
    #[error("{0}")]
    Instruction(String),
}

/// An error with the span of the Dockerfile text it is about.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{kind}")]
pub struct Error {
    /// What went wrong.
    pub kind: ErrorKind,
    /// Where, in the source text.
    pub span: Span,
    /// What to do about it, when kiln can tell.
    pub hint: Option<String>,
}

impl Error {
    /// An error of `kind` at `span`, without a hint.
    pub fn new(kind: ErrorKind, span: Span) -> Self {
        Error {
            kind,
            span,
            hint: None,
        }
    }

    /// The same error with a hint attached.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}
