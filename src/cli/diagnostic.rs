//! Rendering of Dockerfile errors and warnings: `path:line:col`, the line
//! with the span underlined, and a hint. The only place that knows miette.

use kiln::dockerfile::{Error as DfError, ErrorKind, Source, Span};
use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, Severity};
use std::io::IsTerminal;

/// True when diagnostics on stderr may use colour.
pub fn color_stderr() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// One problem in a Dockerfile, with the text needed to show it.
#[derive(Debug)]
pub struct Located {
    /// What went wrong.
    pub kind: ErrorKind,
    /// Warning or error.
    pub severity: Severity,
    /// A short rule name, for lint warnings (`MaintainerDeprecated`).
    pub code: Option<String>,
    span: Span,
    hint: Option<String>,
    name: String,
    text: String,
    position: (usize, usize),
}

impl Located {
    /// An error at its place in `source`.
    pub fn new(source: &Source, err: DfError) -> Box<Self> {
        Box::new(Self::with(source, err, Severity::Error, None))
    }

    /// A problem of any severity, with an optional rule name.
    pub fn with(source: &Source, err: DfError, severity: Severity, code: Option<String>) -> Self {
        let pos = source.position(err.span.start);
        Located {
            kind: err.kind,
            severity,
            code,
            span: err.span,
            hint: err.hint,
            name: source.name.clone(),
            text: source.text.clone(),
            position: (pos.line, pos.column),
        }
    }

    /// `path:line:col: error: message`, then the source snippet with the
    /// span marked, then the hint.
    pub fn render(&self, color: bool) -> String {
        let theme = if color {
            GraphicalTheme::unicode()
        } else {
            GraphicalTheme::unicode_nocolor()
        };
        let handler = GraphicalReportHandler::new_themed(theme)
            .with_context_lines(1)
            .with_width(100)
            .without_syntax_highlighting();
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Advice => "note",
        };
        let code = self
            .code
            .as_deref()
            .map(|c| format!("[{c}] "))
            .unwrap_or_default();
        let mut out = format!(
            "{}:{}:{}: {level}: {code}{}\n",
            self.name, self.position.0, self.position.1, self.kind
        );
        let report = Snippet(self);
        let _ = handler.render_report(&mut out, &report);
        out
    }
}

/// The miette view of a [`Located`].
struct Snippet<'a>(&'a Located);

impl std::fmt::Debug for Snippet<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.0.kind)
    }
}

impl std::fmt::Display for Snippet<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.kind)
    }
}

impl std::error::Error for Snippet<'_> {}

impl miette::Diagnostic for Snippet<'_> {
    fn severity(&self) -> Option<Severity> {
        Some(self.0.severity)
    }

    fn help<'b>(&'b self) -> Option<Box<dyn std::fmt::Display + 'b>> {
        self.0
            .hint
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn std::fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.0.text as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let span = self.0.span;
        let label = LabeledSpan::new_with_span(Some("here".into()), (span.start, span.len()));
        Some(Box::new(std::iter::once(label)))
    }
}

impl From<Box<Located>> for super::Error {
    fn from(located: Box<Located>) -> Self {
        super::Error::Dockerfile(located)
    }
}
