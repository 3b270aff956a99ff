//! The text of a Dockerfile and positions within it.
//!
//! BuildKit reads a Dockerfile as bytes, so a file that is not valid UTF-8
//! still parses and its odd bytes show up in the dump as `\xNN`. kiln keeps
//! text as `str`: each byte that is not part of valid UTF-8 is carried as one
//! code point of a private-use block and turned back into its byte where it
//! matters (the dump, flag words). Offsets and spans are in the decoded text.
//! The price: a real U+10FF80..U+10FFFF in a file dumps as the byte it would
//! carry. Those code points are private-use and never seen in Dockerfiles.

use serde::Serialize;
use unicode_general_category::{GeneralCategory as Gc, get_general_category};

/// First code point of the block that carries raw, non-UTF-8 bytes.
const RAW_BYTE_BASE: u32 = 0x10_FF00;

/// A byte range in a [`Source`]'s text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Span {
    /// Byte offset of the first character.
    pub start: usize,
    /// Byte offset just past the last character.
    pub end: usize,
}

impl Span {
    /// A span from `start` to `end`.
    pub fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }

    /// Number of bytes covered.
    pub fn len(&self) -> usize {
        self.end.saturating_sub(self.start)
    }

    /// True when the span covers nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A 1-based line and column (columns count characters, not bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Position {
    /// 1-based line number.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

/// A decoded Dockerfile with its line index.
#[derive(Clone, Debug)]
pub struct Source {
    /// Where the text came from, as shown in diagnostics (`Dockerfile`, `-`).
    pub name: String,
    /// The decoded text, without a leading UTF-8 byte-order mark.
    pub text: String,
    line_starts: Vec<usize>,
}

impl Source {
    /// Decodes `bytes` (any bytes at all) into a source named `name`.
    pub fn new(name: impl Into<String>, bytes: &[u8]) -> Self {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let text = decode(bytes);
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Source {
            name: name.into(),
            text,
            line_starts,
        }
    }

    /// Line and column of a byte offset (clamped to the text).
    pub fn position(&self, offset: usize) -> Position {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset).max(1);
        let start = self.line_starts[line - 1];
        let column = self
            .text
            .get(start..offset)
            .map_or(1, |s| s.chars().count() + 1);
        Position { line, column }
    }

    /// The text of 1-based `line`, without its line terminator.
    pub fn line_text(&self, line: usize) -> &str {
        let Some(&start) = self.line_starts.get(line.wrapping_sub(1)) else {
            return "";
        };
        let end = self
            .line_starts
            .get(line)
            .map_or(self.text.len(), |&next| next - 1);
        self.text[start..end].trim_end_matches('\r')
    }
}

/// Decodes bytes, carrying each invalid byte as a private-use code point.
pub fn decode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for &b in chunk.invalid() {
            out.push(carry_byte(b));
        }
    }
    out
}

fn carry_byte(b: u8) -> char {
    // Every value of RAW_BYTE_BASE + u8 is a valid scalar value.
    char::from_u32(RAW_BYTE_BASE + u32::from(b)).unwrap_or(char::REPLACEMENT_CHARACTER)
}

/// The raw byte a character carries, if it is one of the carried bytes.
pub fn carried_byte(c: char) -> Option<u8> {
    let v = u32::from(c);
    if (RAW_BYTE_BASE + 0x80..=RAW_BYTE_BASE + 0xFF).contains(&v) {
        u8::try_from(v - RAW_BYTE_BASE).ok()
    } else {
        None
    }
}

/// The original bytes of decoded text.
pub fn encode(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match carried_byte(c) {
            Some(b) => out.push(b),
            None => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    out
}

/// Quotes `text` as Go's `strconv.Quote` does; carried raw bytes become `\xNN`.
pub fn go_quote(text: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if let Some(b) = carried_byte(c) {
            push_hex(&mut out, "\\x", u32::from(b), 2);
            continue;
        }
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if is_go_print(c) => out.push(c),
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0C}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{0B}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7F}' => push_hex(&mut out, "\\x", c as u32, 2),
            c if (c as u32) < 0x1_0000 => push_hex(&mut out, "\\u", c as u32, 4),
            c => push_hex(&mut out, "\\U", c as u32, 8),
        }
    }
    out.push('"');
    return out;

    fn push_hex(out: &mut String, prefix: &str, v: u32, digits: u32) {
        out.push_str(prefix);
        for i in (0..digits).rev() {
            out.push(char::from(HEX[((v >> (4 * i)) & 0xF) as usize]));
        }
    }
}

/// Go's `strconv.IsPrint`: letters, marks, numbers, punctuation, symbols and
/// the ASCII space.
fn is_go_print(c: char) -> bool {
    if c.is_ascii() {
        return (' '..='~').contains(&c);
    }
    !matches!(
        get_general_category(c),
        Gc::Control
            | Gc::Format
            | Gc::Surrogate
            | Gc::PrivateUse
            | Gc::Unassigned
            | Gc::SpaceSeparator
            | Gc::LineSeparator
            | Gc::ParagraphSeparator
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_bytes_round_trip() {
        let bytes = b"RUN echo \xff\xfe ok \xc3\xa9";
        let src = Source::new("Dockerfile", bytes);
        assert_eq!(encode(&src.text), bytes.to_vec());
        assert!(src.text.ends_with("ok é"));
        assert_eq!(carried_byte(src.text.chars().nth(9).unwrap()), Some(0xff));
    }

    #[test]
    fn bom_is_dropped_and_positions_count_characters() {
        let src = Source::new("Dockerfile", "\u{feff}FROM a\nRUN é b\r\n".as_bytes());
        assert_eq!(src.text, "FROM a\nRUN é b\r\n");
        assert_eq!(src.position(0), Position { line: 1, column: 1 });
        let b = src.text.find('b').unwrap();
        assert_eq!(src.position(b), Position { line: 2, column: 7 });
        assert_eq!(src.line_text(2), "RUN é b");
        assert_eq!(src.line_text(9), "");
    }
}
