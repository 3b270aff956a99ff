//! Heredocs: the openers (`<<EOF`, `<<-EOF`, `<<"EOF"`, `3<<EOF`, `<< EOF`)
//! on a RUN, COPY or ADD line, found as BuildKit finds them (the line is
//! split into words by the shell lexer, and each word that is exactly an
//! opener counts), and what BuildKit does with a body afterwards: `<<-`
//! strips leading tabs, and a COPY/ADD body whose opener is unquoted is
//! expanded.

use super::grammar::{DockerfileGrammar, Rule};
use super::shell::{Lexer, ShellError};
use super::syntax::Heredoc;
use pest::Parser;

fn no_env(_: &str) -> Option<&'static str> {
    None
}

/// The heredocs a logical line opens, in order, with empty bodies.
pub(crate) fn openers(line: &str) -> Result<Vec<Heredoc>, String> {
    // As BuildKit's heredocsFromLine: quotes, escapes and `$names` kept as
    // written (`<<$EOF` is a heredoc named `$EOF`).
    let lexer = Lexer {
        raw_quotes: true,
        raw_escapes: true,
        skip_unset: true,
        ..Lexer::new('\\')
    };
    // A line the lexer cannot split (an open quote) opens no heredoc.
    let words = lexer.process_words(line, &no_env).unwrap_or_default();
    let mut heredocs = Vec::new();
    for word in words {
        if let Some(heredoc) = opener(&word)? {
            heredocs.push(heredoc);
        }
    }
    Ok(heredocs)
}

/// The heredoc a word opens, if it is exactly an opener (BuildKit's
/// MustParseHeredoc): how COPY and ADD tell heredoc sources from paths,
/// and RUN tells `RUN <<EOF` from a heredoc inside a larger command. A
/// word the lexer cannot read is no opener. The body is empty.
pub fn parse(word: &str) -> Option<Heredoc> {
    opener(word).ok().flatten()
}

/// Parses one word as an opener: BuildKit's `^(\d*)<<(-?)\s*([^<]*)$`, then
/// the name must lex to a single word; quoting any part of it turns
/// expansion off.
fn opener(word: &str) -> Result<Option<Heredoc>, String> {
    let Ok(pairs) = DockerfileGrammar::parse(Rule::heredoc_word, word) else {
        return Ok(None);
    };
    let (mut fd, mut chomp, mut rest) = ("", false, "");
    for pair in pairs.flatten() {
        match pair.as_rule() {
            Rule::heredoc_fd => fd = pair.as_str(),
            Rule::heredoc_chomp => chomp = pair.as_str() == "-",
            Rule::heredoc_name => rest = pair.as_str(),
            _ => {}
        }
    }
    if rest.is_empty() {
        return Ok(None);
    }
    let mut lexer = Lexer {
        skip_unset: true,
        ..Lexer::new('\\')
    };
    let words = lexer
        .process_words(rest, &no_env)
        .map_err(|e| e.to_string())?;
    let [name] = words.as_slice() else {
        return Ok(None);
    };
    lexer.raw_quotes = true;
    let raw = lexer
        .process_words(rest, &no_env)
        .map_err(|e| e.to_string())?;
    let [raw_name] = raw.as_slice() else {
        return Err(format!("inconsistent lexing of heredoc name {rest}"));
    };
    let quotes = |s: &str| s.matches(['\'', '"']).count();
    Ok(Some(Heredoc {
        name: name.clone(),
        expand: quotes(name) == quotes(raw_name),
        chomp,
        fd: fd.parse().unwrap_or(0),
        content: String::new(),
        span: Default::default(),
    }))
}

/// What `<<-` does to a body (BuildKit's ChompHeredocContent, `(?m)^\t+`):
/// the tabs that start each line go, other blanks and inner tabs stay.
pub fn chomp(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    for line in body.split_inclusive('\n') {
        out.push_str(line.trim_start_matches('\t'));
    }
    out
}

/// Expands the body of a COPY/ADD heredoc whose opener was unquoted, as
/// BuildKit's dispatcher does (a lexer with escape token `\` whatever the
/// `# escape=` directive says, and quotes skipped): `$V`, `${V}` and the
/// `${V:-w}` family expand, unset names (and `$$`, `$1`) to nothing, a lone
/// `$` stays; `\x` is `x`, so `\$` is `$` and `\<newline>` a newline;
/// quotes are content, yet `$` inside them expands.
pub fn expand<'e>(body: &str, env: &dyn Fn(&str) -> Option<&'e str>) -> Result<String, ShellError> {
    let lexer = Lexer {
        skip_quotes: true,
        ..Lexer::new('\\')
    };
    lexer.process_word(body, env).map(|e| e.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(line: &str) -> Vec<(String, bool, bool, u32)> {
        openers(line)
            .unwrap()
            .into_iter()
            .map(|h| (h.name, h.expand, h.chomp, h.fd))
            .collect()
    }

    #[test]
    fn finds_openers_as_words() {
        assert_eq!(names("RUN <<EOF"), [("EOF".into(), true, false, 0)]);
        assert_eq!(names("RUN cat <<-'X' > f"), [("X".into(), false, true, 0)]);
        assert_eq!(
            names("COPY <<a <<\"b\" /dst/"),
            [("a".into(), true, false, 0), ("b".into(), false, false, 0)]
        );
        assert_eq!(
            names("RUN 3<<E python3 /dev/fd/3"),
            [("E".into(), true, false, 3)]
        );
        assert_eq!(
            names("RUN E\"O\"F=1 <<E\"O\"F"),
            [("EOF".into(), false, false, 0)]
        );
        assert_eq!(names("RUN <<$EOF"), [("$EOF".into(), true, false, 0)]);
        assert_eq!(
            names("RUN <<${X:-y} <<'$Z'"),
            [
                ("${X:-y}".into(), true, false, 0),
                ("$Z".into(), false, false, 0)
            ]
        );
    }

    #[test]
    fn blanks_may_follow_the_angle_brackets() {
        // BuildKit's lexer keeps the blanks after `<<` in its word; after
        // `<<-` they end the word, so `<<- EOF` opens nothing.
        assert_eq!(names("RUN <<  EOF"), [("EOF".into(), true, false, 0)]);
        assert_eq!(
            names("RUN <<\tEOF  > foo"),
            [("EOF".into(), true, false, 0)]
        );
        assert_eq!(names("RUN << -EOF"), [("-EOF".into(), true, false, 0)]);
        assert_eq!(names("RUN 3<< 'E'"), [("E".into(), false, false, 3)]);
        assert!(names("RUN <<- EOF").is_empty());
        assert!(names("RUN echo <<  ").is_empty());
    }

    #[test]
    fn parses_one_word_as_buildkit_must_parse_heredoc() {
        let got = |w: &str| parse(w).map(|h| (h.name, h.expand, h.chomp, h.fd));
        assert_eq!(got("<<EOF"), Some(("EOF".into(), true, false, 0)));
        assert_eq!(got("<<-\"EOF\""), Some(("EOF".into(), false, true, 0)));
        assert_eq!(got("<<  EOF"), Some(("EOF".into(), true, false, 0)));
        assert_eq!(got("<<-  EOF"), Some(("EOF".into(), true, true, 0)));
        assert_eq!(got("4<<EO\"F\""), Some(("EOF".into(), false, false, 4)));
        assert_eq!(
            got("<<'one two'"),
            Some(("one two".into(), false, false, 0))
        );
        // The whole text of `RUN <<EOF sh > out` is more than one word.
        assert_eq!(got("<<EOF sh > out"), None);
        assert_eq!(got("<<EOF <<EOF2"), None);
        assert_eq!(got("<<"), None);
        assert_eq!(got("<<-"), None);
        assert_eq!(got("<<'EOF"), None);
        assert_eq!(got("/dest"), None);
        assert_eq!(got("a<<EOF"), None);
    }

    #[test]
    fn chomp_strips_leading_tabs_of_every_line() {
        let cases = [
            ("\tfoo\n", "foo\n"),
            ("\t\tfoo\n\tbar\n", "foo\nbar\n"),
            ("echo \"\n\tbar\"\n", "echo \"\nbar\"\n"),
            (" \tfoo\n", " \tfoo\n"),
            ("a\tb\n", "a\tb\n"),
            ("\t#!/bin/sh\n\t\techo\n", "#!/bin/sh\necho\n"),
            ("", ""),
            ("\t", ""),
        ];
        for (body, want) in cases {
            assert_eq!(chomp(body), want, "chomping {body:?}");
        }
    }

    #[test]
    fn expansion_table() {
        let env = |name: &str| match name {
            "NAME" => Some("me"),
            "E" => Some(""),
            _ => None,
        };
        let cases = [
            ("Hello ${NAME}!\n", "Hello me!\n"),
            ("$NAME $UNSET.\n", "me .\n"),
            // Quotes are content; `$` inside them still expands.
            ("'$NAME' \"$NAME\"\n", "'me' \"me\"\n"),
            ("\"quotes\"\n", "\"quotes\"\n"),
            // A backslash escapes any character, a newline too.
            ("a\\nb\n", "anb\n"),
            ("\\$NAME\n", "$NAME\n"),
            ("\\\\\n", "\\\n"),
            ("\\\n", "\n"),
            ("a\\\nb\n", "a\nb\n"),
            ("\\\"q\\\"\n", "\"q\"\n"),
            ("\"\\$NAME\"\n", "\"$NAME\"\n"),
            // Special parameters and positional ones are unset.
            ("$$ $1 $@.\n", "  .\n"),
            ("a $ b $\n", "a $ b $\n"),
            (
                "${UNSET:-def} ${NAME:+alt} ${E:-empty}\n",
                "def alt empty\n",
            ),
            ("${NAME#m}\n", "e\n"),
            // The backtick is no escape here, whatever `# escape=` says.
            ("`$NAME `\n", "`me `\n"),
            // `<<` in a body is text.
            ("cat << EOF\n", "cat << EOF\n"),
        ];
        for (body, want) in cases {
            assert_eq!(
                expand(body, &env).as_deref(),
                Ok(want),
                "expanding {body:?}"
            );
        }
        assert_eq!(expand("${UNSET:-x\n", &env), Err(ShellError::MissingBrace));
    }

    #[test]
    fn ignores_what_is_not_an_opener() {
        assert!(names("RUN cat<<EOF").is_empty());
        assert!(names("RUN echo '<<EOF'").is_empty());
        assert!(names("RUN echo a<<b <<").is_empty());
        assert!(names("RUN echo 'open").is_empty());
    }
}
