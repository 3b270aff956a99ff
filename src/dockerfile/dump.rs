//! The parse-tree dump of `kiln parse`, in the notation of BuildKit's parser
//! test files (`Node.Dump`): one s-expression per instruction, arguments
//! quoted as Go's `strconv.Quote` quotes them. See shared/spec/parse-dump.md.

use super::source::go_quote;
use super::syntax::{Ast, Node, flag_dump_text};

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
