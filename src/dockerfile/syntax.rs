//! The syntactic layer: Dockerfile text → a list of [`Node`]s.
//!
//! This mirrors BuildKit's `parser.Parse`: the line reader (directives at the
//! top, the escape token, continuations, comments inside continuations,
//! heredoc bodies) is the loop below; the structure of each logical line is
//! the pest grammar. Nothing here validates keywords or flags or expands
//! variables: that is the typed layer's and the planner's work.

use super::error::{Error, ErrorKind};
use super::grammar::{DockerfileGrammar, Rule};
use super::heredoc;
use super::source::{Source, Span, encode};
use pest::Parser;
use serde::Serialize;

/// Instructions whose arguments may open heredocs.
const HEREDOC_KEYWORDS: [&str; 3] = ["add", "copy", "run"];
/// How deep `ONBUILD ONBUILD ...` may nest before kiln gives up.
const MAX_ONBUILD_DEPTH: usize = 64;

/// A parser directive from the top of the file (`# escape=\``).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Directive {
    /// The directive's name, lower case (`syntax`, `escape`, `check`).
    pub name: String,
    /// Its value, trimmed.
    pub value: String,
    /// The whole directive line.
    pub span: Span,
}

/// A `--flag` word before an instruction's arguments.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Flag {
    /// The word with quotes and escapes removed (`--x="a b"` → `--x=a b`).
    pub text: String,
    /// The word as written.
    #[serde(skip)]
    pub raw: String,
    /// Where it was written.
    pub span: Span,
}

/// A heredoc attached to a RUN, COPY or ADD instruction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Heredoc {
    /// The terminator word, quotes removed.
    pub name: String,
    /// False when the opener quoted the terminator: no expansion of the body.
    pub expand: bool,
    /// True for `<<-`: leading tabs are stripped from the body.
    pub chomp: bool,
    /// The file descriptor before `<<` (`3<<EOF`), 0 when none.
    pub fd: u32,
    /// The body, each line ending in `\n`, as read (tabs not yet stripped).
    pub content: String,
    /// From the first body line to the end of the terminator line.
    pub span: Span,
}

/// One instruction as the syntactic parser sees it (BuildKit's `Node`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Node {
    /// The keyword as written (`RUN`, `run`, `FOO`).
    pub keyword: String,
    /// The keyword in lower case, the form every lookup uses.
    #[serde(skip)]
    pub name: String,
    /// Leading `--flag` words, as text.
    pub flags: Vec<Flag>,
    /// The arguments (BuildKit's `Next` chain): see shared/spec/parse-dump.md.
    pub args: Vec<String>,
    /// The instruction that ONBUILD wraps.
    pub child: Option<Box<Node>>,
    /// True when the arguments were a JSON array (exec form).
    pub json: bool,
    /// Heredoc bodies, in the order their openers appear.
    pub heredocs: Vec<Heredoc>,
    /// The logical line: continuations joined, comments dropped.
    pub original: String,
    /// 1-based line of the keyword.
    pub start_line: usize,
    /// 1-based last line (continuations and heredoc bodies included).
    pub end_line: usize,
    /// From the keyword to the end of the last line.
    pub span: Span,
    /// The keyword.
    pub keyword_span: Span,
    /// The argument text after the flags (empty span when there is none).
    pub args_span: Span,
    /// The comment lines right above the instruction, `#` and blanks
    /// trimmed (BuildKit's PrevComment: `# check=` per instruction, and
    /// the descriptions of stages and ARGs).
    #[serde(skip)]
    pub comments: Vec<String>,
}

impl Node {
    fn can_contain_heredoc(&self) -> bool {
        let node = match (&self.child, self.name == "onbuild") {
            (Some(child), true) => child,
            _ => self,
        };
        HEREDOC_KEYWORDS.contains(&node.name.as_str()) && !node.json
    }
}

/// Something the parser accepted but a person should hear about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// What it is about.
    pub message: String,
    /// Where.
    pub span: Span,
}

/// The parse tree of a whole file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Ast {
    /// Directives found at the top, in order.
    pub directives: Vec<Directive>,
    /// The escape token in force (`\` unless a directive said `` ` ``).
    pub escape: char,
    /// The instructions, in order.
    pub nodes: Vec<Node>,
    /// Things accepted with a warning (empty continuation lines).
    pub warnings: Vec<Warning>,
}

/// Parses a whole Dockerfile into its syntax tree.
pub fn parse(source: &Source) -> Result<Ast, Error> {
    Scanner::new(source).run()
}

/// A physical line: byte offset of its start and its text without `\n` and
/// one trailing `\r` (Go's bufio.ScanLines).
#[derive(Clone, Copy)]
struct Line<'a> {
    start: usize,
    text: &'a str,
}

fn split_lines(text: &str) -> Vec<Line<'_>> {
    let mut lines = Vec::new();
    let mut start = 0;
    for piece in text.split('\n') {
        let trimmed = piece.strip_suffix('\r').unwrap_or(piece);
        lines.push(Line {
            start,
            text: trimmed,
        });
        start += piece.len() + 1;
    }
    if text.is_empty() || text.ends_with('\n') {
        lines.pop();
    }
    lines
}

/// A logical line with the map from its offsets back to the source's.
#[derive(Default)]
struct Logical {
    text: String,
    /// (offset in `text`, offset in the source) for each appended piece.
    pieces: Vec<(usize, usize)>,
}

impl Logical {
    fn push(&mut self, piece: &str, source_offset: usize) {
        self.pieces.push((self.text.len(), source_offset));
        self.text.push_str(piece);
    }

    fn to_source(&self, offset: usize) -> usize {
        let i = self.pieces.partition_point(|&(l, _)| l <= offset).max(1);
        let (l, s) = self.pieces.get(i - 1).copied().unwrap_or((0, 0));
        s + (offset - l)
    }

    fn span(&self, start: usize, end: usize) -> Span {
        if start == end {
            let s = self.to_source(start);
            return Span::new(s, s);
        }
        // The end maps through the last character so that a range ending at
        // a piece boundary stays on the line it ends on.
        Span::new(self.to_source(start), self.to_source(end - 1) + 1)
    }
}

struct Scanner<'s> {
    source: &'s Source,
    lines: Vec<Line<'s>>,
    next: usize,
    escape: char,
    directives: Vec<Directive>,
    directives_done: bool,
    warnings: Vec<Warning>,
}

impl<'s> Scanner<'s> {
    fn new(source: &'s Source) -> Self {
        Scanner {
            source,
            lines: split_lines(&source.text),
            next: 0,
            escape: '\\',
            directives: Vec::new(),
            directives_done: false,
            warnings: Vec::new(),
        }
    }

    fn run(mut self) -> Result<Ast, Error> {
        let mut nodes = Vec::new();
        // As BuildKit's parser: a comment line adds to them, an empty
        // comment (`#`) clears them, a directive is not one of them, and
        // blank lines leave them as they are.
        let mut comments: Vec<String> = Vec::new();
        while self.next < self.lines.len() {
            let first = self.next;
            self.next += 1;
            let line = self.lines[first];
            let directives = self.directives.len();
            if is_comment(line.text) {
                let body = line.text.trim_start();
                let comment = body[1..].trim();
                if comment.is_empty() {
                    comments.clear();
                } else {
                    comments.push(comment.to_string());
                }
            }
            let (text, offset) = self.process_line(&line, true)?;
            if self.directives.len() > directives {
                comments.pop();
            }
            let mut logical = Logical::default();
            let (piece, mut at_end) = trim_continuation(text, self.escape);
            if at_end && piece.is_empty() {
                continue;
            }
            logical.push(piece, offset);

            let mut empty_continuation = None;
            while !at_end && self.next < self.lines.len() {
                let line = self.lines[self.next];
                self.next += 1;
                let (text, offset) = self.process_line(&line, false)?;
                if is_comment(line.text) {
                    continue;
                }
                if text.trim_start().is_empty() {
                    empty_continuation.get_or_insert(line.start);
                    continue;
                }
                let (piece, end) = trim_continuation(text, self.escape);
                at_end = end;
                logical.push(piece, offset);
            }
            if let Some(at) = empty_continuation {
                self.warnings.push(Warning {
                    message: "Empty continuation line found in: ".to_string() + logical.text.trim(),
                    span: Span::new(at, at),
                });
            }

            let whole_span = |scanner: &Self| {
                let last = &scanner.lines[scanner.next - 1];
                Span::new(logical.to_source(0), last.start + last.text.len())
            };
            let mut node = match build_node(&logical, 0, logical.text.len(), self.escape, 0) {
                Ok(node) => node,
                Err(mut e) => {
                    if e.span.is_empty() {
                        e.span = whole_span(&self);
                    }
                    return Err(e);
                }
            };
            if node.can_contain_heredoc() && logical.text.contains("<<") {
                let heads = heredoc::openers(&logical.text)
                    .map_err(|m| Error::new(ErrorKind::BadHeredoc(m), whole_span(&self)))?;
                for head in heads {
                    let (content, span) = self.read_heredoc(&head).ok_or_else(|| {
                        Error::new(
                            ErrorKind::UnterminatedHeredoc(head.name.clone()),
                            whole_span(&self),
                        )
                        .with_hint(format!(
                            "end the heredoc with a line that holds only {}",
                            head.name
                        ))
                    })?;
                    node.heredocs.push(Heredoc {
                        content,
                        span,
                        ..head
                    });
                }
            }
            node.start_line = first + 1;
            node.end_line = self.next;
            node.span = whole_span(&self);
            node.comments = std::mem::take(&mut comments);
            nodes.push(node);
        }
        if nodes.is_empty() {
            let end = self.source.text.len();
            return Err(Error::new(ErrorKind::NoInstructions, Span::new(end, end))
                .with_hint("a Dockerfile needs at least a FROM instruction"));
        }
        Ok(Ast {
            directives: self.directives,
            escape: self.escape,
            nodes,
            warnings: self.warnings,
        })
    }

    /// BuildKit's processLine: trims the line end (and, for the first line of
    /// an instruction, leading blanks), looks for a directive, and drops a
    /// comment. Returns the text and the source offset where it starts.
    fn process_line(
        &mut self,
        line: &Line<'s>,
        strip_left: bool,
    ) -> Result<(&'s str, usize), Error> {
        let mut text = line.text.trim_end_matches(['\r', '\n']);
        let mut offset = line.start;
        if strip_left {
            let trimmed = text.trim_start();
            offset += text.len() - trimmed.len();
            text = trimmed;
        }
        self.possible_directive(text, Span::new(offset, offset + text.len()))?;
        if text.starts_with('#') {
            text = "";
        }
        Ok((text, offset))
    }

    fn possible_directive(&mut self, text: &str, span: Span) -> Result<(), Error> {
        if self.directives_done {
            return Ok(());
        }
        let Some((name, value)) = directive(text) else {
            self.directives_done = true;
            return Ok(());
        };
        if !["syntax", "escape", "check"].contains(&name.as_str()) {
            self.directives_done = true;
            return Ok(());
        }
        if self.directives.iter().any(|d| d.name == name) {
            return Err(Error::new(ErrorKind::DuplicateDirective(name), span)
                .with_hint("remove one of the two"));
        }
        if name == "escape" {
            self.escape = match value.as_str() {
                "\\" => '\\',
                "`" => '`',
                _ => {
                    return Err(Error::new(ErrorKind::InvalidEscape(value), span)
                        .with_hint("use `# escape=\\` or `# escape=``"));
                }
            };
        }
        self.directives.push(Directive { name, value, span });
        Ok(())
    }

    /// Reads a heredoc body up to its terminator line: the body and its span
    /// (terminator included); None at end of file.
    fn read_heredoc(&mut self, head: &Heredoc) -> Option<(String, Span)> {
        let mut body = String::new();
        let start = self.lines.get(self.next)?.start;
        while self.next < self.lines.len() {
            let Line {
                start: at,
                text: line,
            } = self.lines[self.next];
            self.next += 1;
            let mut candidate = line.trim_end_matches(['\r', '\n']);
            if head.chomp {
                candidate = candidate.trim_start_matches('\t');
            }
            if candidate == head.name {
                return Some((body, Span::new(start, at + line.len())));
            }
            body.push_str(line);
            body.push('\n');
        }
        None
    }
}

/// Parses `# name = value` as BuildKit's directive regex does.
fn directive(text: &str) -> Option<(String, String)> {
    let pairs = DockerfileGrammar::parse(Rule::directive, text).ok()?;
    let mut name = String::new();
    let mut value = "";
    for pair in pairs.flatten() {
        match pair.as_rule() {
            Rule::directive_name => name = pair.as_str().to_ascii_lowercase(),
            Rule::directive_value => value = pair.as_str(),
            _ => {}
        }
    }
    let is_blank = |c: char| matches!(c, ' ' | '\t' | '\n' | '\u{0C}' | '\r');
    let trimmed = value.trim_matches(is_blank);
    let value = if trimmed.is_empty() {
        // `(.+?)\s*$` after `\s*`: the regex backs off one blank for the value.
        value.chars().last()?.to_string()
    } else {
        trimmed.to_string()
    };
    Some((name, value))
}

fn is_comment(line: &str) -> bool {
    line.trim_end_matches(['\r', '\n'])
        .trim_start()
        .starts_with('#')
}

/// BuildKit's line continuation regex `([^E]|^)E[ \t]*$` for escape token E:
/// returns the line without the token and whether the instruction ends here.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let body = line.trim_end_matches([' ', '\t']);
    if let Some(before) = body.strip_suffix(escape)
        && before.chars().next_back().is_none_or(|c| c != escape)
    {
        return (before, false);
    }
    (line, true)
}

/// Builds the node for `logical.text[start..end]` (BuildKit's newNodeFromLine).
fn build_node(
    logical: &Logical,
    start: usize,
    end: usize,
    escape: char,
    depth: usize,
) -> Result<Node, Error> {
    if depth > MAX_ONBUILD_DEPTH {
        return Err(Error::new(ErrorKind::TooDeep, logical.span(start, end)));
    }
    let line = &logical.text[start..end];
    let base = start + (line.len() - line.trim_start().len());
    let text = line.trim();
    let pairs = DockerfileGrammar::parse(Rule::instruction, text).map_err(|e| {
        Error::new(
            ErrorKind::Instruction(e.to_string()),
            logical.span(start, end),
        )
    })?;

    let mut keyword = ("", 0..0);
    let mut flags = Vec::new();
    // The arguments start after the keyword, or after the last flag word.
    let mut rest_at = 0;
    let mut ended = false;
    for pair in pairs.flatten() {
        let range = pair.as_span().start()..pair.as_span().end();
        match pair.as_rule() {
            Rule::keyword => {
                rest_at = range.end;
                keyword = (pair.as_str(), range);
            }
            Rule::flag if !ended => {
                let text = unquote_flag(pair.as_str());
                rest_at = range.end;
                if text == "--" {
                    ended = true;
                } else {
                    flags.push(Flag {
                        text,
                        raw: pair.as_str().to_string(),
                        span: logical.span(base + range.start, base + range.end),
                    });
                }
            }
            _ => {}
        }
    }
    let rest_raw = &text[rest_at.min(text.len())..];
    let rest = rest_raw.trim();
    let rest_start = base + rest_at + (rest_raw.len() - rest_raw.trim_start().len());
    let args_span = logical.span(rest_start, rest_start + rest.len());
    let err = |kind| Error::new(kind, args_span);

    let mut node = Node {
        keyword: keyword.0.to_string(),
        name: keyword.0.to_lowercase(),
        flags,
        args: Vec::new(),
        child: None,
        json: false,
        heredocs: Vec::new(),
        original: logical.text.clone(),
        start_line: 0,
        end_line: 0,
        span: logical.span(start, end),
        keyword_span: logical.span(base + keyword.1.start, base + keyword.1.end),
        args_span,
        comments: Vec::new(),
    };
    match node.name.as_str() {
        "add" | "copy" | "volume" => match json_array(rest).map_err(err)? {
            Some(items) => (node.args, node.json) = (items, true),
            None => node.args = split_whitespace(rest),
        },
        "cmd" | "entrypoint" | "run" | "shell" => {
            (node.args, node.json) = maybe_json(rest).map_err(err)?;
        }
        "arg" => node.args = words(rest, escape),
        "env" | "label" => {
            node.args = name_values(rest, &node.keyword.to_uppercase(), escape).map_err(err)?
        }
        "expose" | "from" => node.args = split_whitespace(rest),
        "maintainer" | "stopsignal" | "user" | "workdir" => {
            if !rest.is_empty() {
                node.args.push(rest.to_string());
            }
        }
        "healthcheck" => {
            let kind_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            if kind_end > 0 {
                node.args.push(rest[..kind_end].to_string());
                let (cmd, json) = maybe_json(rest[kind_end..].trim_start()).map_err(err)?;
                node.args.extend(cmd);
                node.json = json;
            }
        }
        "onbuild" => {
            if !rest.is_empty() {
                let child = build_node(
                    logical,
                    rest_start,
                    rest_start + rest.len(),
                    escape,
                    depth + 1,
                )?;
                node.child = Some(Box::new(child));
            }
        }
        // BuildKit's parser keeps unknown instructions with one empty
        // argument; the typed layer rejects them.
        _ => node.args.push(String::new()),
    }
    Ok(node)
}

/// Removes quotes and escapes from a flag word as BuildKit's
/// extractBuilderFlags does: `\` escapes the next character, inside or
/// outside quotes, and a trailing `\` is dropped.
fn unquote_flag(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut quote = None;
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (_, '\\') => {
                if let Some(next) = chars.next() {
                    out.push(next);
                }
            }
            (_, c) => out.push(c),
        }
    }
    out
}

/// The flag word as BuildKit's dump shows it: its byte-at-a-time loop turns
/// each byte of a non-ASCII character into one Latin-1 character.
pub(crate) fn flag_dump_text(flag: &Flag) -> String {
    if flag.raw.is_ascii() {
        return flag.text.clone();
    }
    unquote_flag(
        &encode(&flag.raw)
            .into_iter()
            .map(char::from)
            .collect::<String>(),
    )
}

/// RUN/CMD/ENTRYPOINT/SHELL/HEALTHCHECK arguments: a JSON string array, or
/// the whole text as one argument.
fn maybe_json(rest: &str) -> Result<(Vec<String>, bool), ErrorKind> {
    if rest.is_empty() {
        return Ok((Vec::new(), false));
    }
    Ok(match json_array(rest)? {
        Some(items) => (items, true),
        None => (vec![rest.to_string()], false),
    })
}

/// The exec form: Some(strings) for a JSON array of strings, None when the
/// text is not JSON (shell form), an error for valid JSON of another shape.
/// The whole text must be the array, as Go's `json.Unmarshal` wants it in
/// current BuildKit: `CMD ["a"] b` and `ENTRYPOINT []x` are shell form.
fn json_array(rest: &str) -> Result<Option<Vec<String>>, ErrorKind> {
    if !rest.trim_start().starts_with('[') {
        return Ok(None);
    }
    if let Ok(pairs) = DockerfileGrammar::parse(Rule::json_array, rest) {
        let items = pairs
            .flatten()
            .filter(|p| p.as_rule() == Rule::json_string)
            .map(|p| decode_json_string(p.as_str()))
            .collect();
        return Ok(Some(items));
    }
    match serde_json::from_str::<serde::de::IgnoredAny>(rest) {
        Ok(_) => Err(ErrorKind::NotStringArray),
        Err(_) => Ok(None),
    }
}

/// Decodes a JSON string literal (quotes included) the way Go does: bad
/// surrogates and invalid UTF-8 become U+FFFD.
fn decode_json_string(lit: &str) -> String {
    let inner = &lit[1..lit.len() - 1];
    let mut out = String::with_capacity(inner.len());
    let mut rest = inner;
    while let Some(c) = rest.chars().next() {
        rest = &rest[c.len_utf8()..];
        if c != '\\' {
            let carried = super::source::carried_byte(c).is_some();
            out.push(if carried {
                char::REPLACEMENT_CHARACTER
            } else {
                c
            });
            continue;
        }
        let Some(e) = rest.chars().next() else { break };
        rest = &rest[1..];
        match e {
            'b' => out.push('\u{08}'),
            'f' => out.push('\u{0C}'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'u' => {
                let unit = hex4(rest);
                rest = &rest[4.min(rest.len())..];
                if (0xD800..0xE000).contains(&unit) {
                    let low = rest.strip_prefix("\\u").map(hex4);
                    if let Some(low) = low.filter(|l| (0xDC00..0xE000).contains(l) && unit < 0xDC00)
                    {
                        let c = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                        out.push(char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER));
                        rest = &rest[6..];
                    } else {
                        out.push(char::REPLACEMENT_CHARACTER);
                    }
                } else {
                    out.push(char::from_u32(unit).unwrap_or(char::REPLACEMENT_CHARACTER));
                }
            }
            other => out.push(other),
        }
    }
    out
}

fn hex4(s: &str) -> u32 {
    s.get(..4)
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .unwrap_or(0xFFFD)
}

/// BuildKit's `reWhitespace` split: runs of `[\t\v\f\r ]`.
fn split_whitespace(rest: &str) -> Vec<String> {
    if rest.is_empty() {
        return Vec::new();
    }
    rest.split(['\t', '\u{0B}', '\u{0C}', '\r', ' '])
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// The quote-aware word split of ARG/ENV/LABEL (BuildKit's parseWords).
pub(crate) fn words(rest: &str, escape: char) -> Vec<String> {
    let input = format!("{escape}{rest}");
    let Ok(pairs) = DockerfileGrammar::parse(Rule::words, &input) else {
        return vec![rest.to_string()];
    };
    let mut out = Vec::new();
    for pair in pairs.flatten() {
        if pair.as_rule() == Rule::word {
            let word: String = pair
                .into_inner()
                .flatten()
                .filter(|p| p.as_rule() == Rule::word_text)
                .map(|p| p.as_str())
                .collect();
            out.push(word);
        }
    }
    out
}

/// ENV and LABEL arguments as (key, value, separator) triples.
fn name_values(rest: &str, keyword: &str, escape: char) -> Result<Vec<String>, ErrorKind> {
    let words = words(rest, escape);
    let Some(first) = words.first() else {
        return Ok(Vec::new());
    };
    if !first.contains('=') {
        let mut parts = rest.splitn(2, ['\t', '\u{0B}', '\u{0C}', '\r', ' ']);
        let key = parts.next().unwrap_or_default();
        let value = parts
            .next()
            .map(|v| v.trim_start_matches(['\t', '\u{0B}', '\u{0C}', '\r', ' ']));
        return match value {
            Some(value) if !value.is_empty() || rest.len() > key.len() => {
                Ok(vec![key.to_string(), value.to_string(), String::new()])
            }
            _ => Err(ErrorKind::MissingValue(keyword.to_string())),
        };
    }
    let mut out = Vec::with_capacity(words.len() * 3);
    for word in &words {
        let Some((key, value)) = word.split_once('=') else {
            return Err(ErrorKind::MissingEquals(super::source::go_quote(word)));
        };
        out.extend([key.to_string(), value.to_string(), "=".to_string()]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(text: &str) -> Vec<Node> {
        parse(&Source::new("Dockerfile", text.as_bytes()))
            .unwrap()
            .nodes
    }

    #[test]
    fn continuation_keeps_next_line_indent() {
        let n = nodes("RUN echo hello\\\n  world\n");
        assert_eq!(n[0].args, ["echo hello  world"]);
        assert_eq!((n[0].start_line, n[0].end_line), (1, 2));
    }

    #[test]
    fn double_escape_is_not_a_continuation() {
        let n = nodes("RUN a\\\\\nRUN b\n");
        assert_eq!(n.len(), 2);
        assert_eq!(n[0].args, ["a\\\\"]);
    }

    #[test]
    fn spans_point_into_the_source() {
        let text = "FROM a\n  COPY --from=b \\\n   x  /y\n";
        let n = nodes(text);
        let copy = &n[1];
        assert_eq!(
            &text[copy.keyword_span.start..copy.keyword_span.end],
            "COPY"
        );
        assert_eq!(
            &text[copy.flags[0].span.start..copy.flags[0].span.end],
            "--from=b"
        );
        assert_eq!(&text[copy.args_span.start..copy.args_span.start + 1], "x");
        assert_eq!(&text[copy.args_span.end - 2..copy.args_span.end], "/y");
    }

    #[test]
    fn flags_end_at_double_dash() {
        let n = nodes("RUN --mount=type=cache -- --not-a-flag\n");
        assert_eq!(n[0].flags.len(), 1);
        assert_eq!(n[0].args, ["--not-a-flag"]);
    }

    #[test]
    fn heredoc_bodies_are_read() {
        let n = nodes("RUN <<EOF <<-'END'\necho a\nEOF\n\tcat\n\tEND\nRUN x\n");
        assert_eq!(n.len(), 2);
        let h = &n[0].heredocs;
        assert_eq!(
            (h[0].name.as_str(), h[0].content.as_str(), h[0].expand),
            ("EOF", "echo a\n", true)
        );
        assert_eq!(
            (
                h[1].name.as_str(),
                h[1].content.as_str(),
                h[1].chomp,
                h[1].expand
            ),
            ("END", "\tcat\n", true, false)
        );
    }

    #[test]
    fn unterminated_heredoc_is_an_error() {
        let e = parse(&Source::new("Dockerfile", b"FROM a\nRUN <<EOF\necho\n")).unwrap_err();
        assert_eq!(e.kind, ErrorKind::UnterminatedHeredoc("EOF".into()));
    }

    #[test]
    fn json_with_trailing_text_is_shell_form() {
        assert_eq!(nodes("CMD [\"a\"] b\n")[0].args, ["[\"a\"] b"]);
        assert!(!nodes("CMD [\"a\"] b\n")[0].json);
        assert_eq!(
            nodes("ENTRYPOINT []random string\n")[0].args,
            ["[]random string"]
        );
        assert_eq!(nodes("CMD [\"a\"]  \n")[0].args, ["a"]);
        assert_eq!(
            nodes("CMD [\"\\ud83d\\ude00\", \"\\ud800\"]\n")[0].args,
            ["😀", "\u{fffd}"]
        );
    }

    #[test]
    fn directive_value_of_blanks_backs_off_one() {
        assert_eq!(
            directive("# syntax =   "),
            Some(("syntax".into(), " ".into()))
        );
        assert_eq!(
            directive("#Escape= ` "),
            Some(("escape".into(), "`".into()))
        );
        assert_eq!(directive("# escape"), None);
    }
}
