//! The parse-tree dump of `kiln parse`, in the notation of BuildKit's parser
//! test files (`Node.Dump`): one s-expression per instruction, arguments
//! quoted as Go's `strconv.Quote` quotes them. See shared/spec/parse-dump.md.

use super::source::carried_byte;
use super::syntax::{Ast, Node, flag_dump_text};
use unicode_general_category::{GeneralCategory as Gc, get_general_category};

/// The dump of a whole file: one line per instruction, each ending in `\n`.
pub fn dump(ast: &Ast) -> String {
    let mut out = String::new();
    for node in &ast.nodes {
        out.push('(');
        out.push_str(&dump_node(node));
        out.push_str(")\n");
    }
    out
}

/// The dump of one instruction, without the surrounding parentheses.
pub fn dump_node(node: &Node) -> String {
    let mut s = node.keyword.to_lowercase();
    if !node.flags.is_empty() {
        s.push_str(" [");
        let flags: Vec<String> = node
            .flags
            .iter()
            .map(|f| go_quote(&flag_dump_text(f)))
            .collect();
        s.push_str(&flags.join(" "));
        s.push(']');
    }
    if let Some(child) = &node.child {
        s.push_str(" (");
        s.push_str(&dump_node(child));
        s.push(')');
    }
    for arg in &node.args {
        s.push(' ');
        s.push_str(&go_quote(arg));
    }
    s
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
    fn quotes_like_go() {
        let cases = [
            ("abc", r#""abc""#),
            ("a\"b\\c", r#""a\"b\\c""#),
            ("\u{7}\u{8}\u{c}\n\r\t\u{b}", r#""\a\b\f\n\r\t\v""#),
            ("\0\u{1f}\u{7f}", r#""\x00\x1f\x7f""#),
            ("♥ é", "\"♥ é\""),
            ("\u{a0}\u{200b}\u{feff}", r#""\u00a0\u200b\ufeff""#),
            ("\u{f0000}\u{e0001}", r#""\U000f0000\U000e0001""#),
        ];
        for (input, want) in cases {
            assert_eq!(go_quote(input), want, "quoting {input:?}");
        }
    }

    #[test]
    fn quotes_carried_bytes_as_hex() {
        let text = super::super::source::decode(b"a\xffb");
        assert_eq!(go_quote(&text), r#""a\xffb""#);
    }
}
