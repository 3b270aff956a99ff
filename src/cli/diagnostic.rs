//! Rendering of Dockerfile errors and warnings, rustc style:
//! `error: message`, `--> path:line:col`, the line with the span underlined,
//! and a hint. The only place that knows how diagnostics look.

use annotate_snippets::{AnnotationKind, Level, Renderer, Snippet};
use kiln::dockerfile::{Error as DfError, ErrorKind, Source, Span};
use std::io::IsTerminal;

/// True when diagnostics on stderr may use colour.
pub fn color_stderr() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// True when diagnostics on stdout may use colour.
pub fn color_stdout() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// How serious a problem is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// The Dockerfile cannot be built.
    Error,
    /// It can, but should not be written this way.
    Warning,
}

/// One problem in a Dockerfile, with the text needed to show it.
#[derive(Debug)]
pub struct Located {
    /// What went wrong.
    pub kind: ErrorKind,
    /// Warning or error.
    pub severity: Severity,
    /// The lint rule's name, for lint findings (`MaintainerDeprecated`).
    pub code: Option<String>,
    span: Span,
    hint: Option<String>,
    name: String,
    text: String,
}

impl Located {
    /// An error at its place in `source`.
    pub fn new(source: &Source, err: DfError) -> Box<Self> {
        Box::new(Self::with(source, err, Severity::Error, None))
    }

    /// A problem of any severity, with an optional rule name.
    pub fn with(source: &Source, err: DfError, severity: Severity, code: Option<String>) -> Self {
        Located {
            kind: err.kind,
            severity,
            code,
            span: err.span,
            hint: err.hint,
            name: source.name.clone(),
            text: source.text.clone(),
        }
    }

    /// The problem as a person reads it, ending in a newline.
    pub fn render(&self, color: bool) -> String {
        let level = match self.severity {
            Severity::Error => Level::ERROR,
            Severity::Warning => Level::WARNING,
        };
        let message = self.kind.to_string();
        let mut title = level.primary_title(message.as_str());
        if let Some(code) = &self.code {
            title = title.id(code.as_str());
        }
        let end = self.span.end.min(self.text.len());
        let start = self.span.start.min(end);
        let snippet = Snippet::source(self.text.as_str())
            .path(self.name.as_str())
            .annotation(AnnotationKind::Primary.span(start..end));
        let mut group = title.element(snippet);
        if let Some(hint) = &self.hint {
            group = group.element(Level::HELP.message(hint.as_str()));
        }
        let renderer = if color {
            Renderer::styled()
        } else {
            Renderer::plain()
        };
        let mut out = renderer.render(&[group]);
        out.push('\n');
        out
    }
}

impl From<Box<Located>> for super::Error {
    fn from(located: Box<Located>) -> Self {
        super::Error::Dockerfile(located)
    }
}
