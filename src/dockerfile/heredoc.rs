//! Heredoc openers (`<<EOF`, `<<-EOF`, `<<"EOF"`, `3<<EOF`) on a RUN, COPY or
//! ADD line, found as BuildKit finds them: the line is split into words by
//! the shell lexer, and each word that is exactly an opener counts.

use super::grammar::{DockerfileGrammar, Rule};
use super::shell::Lexer;
use super::syntax::Heredoc;
use pest::Parser;

fn no_env(_: &str) -> Option<&'static str> {
    None
}

/// The heredocs a logical line opens, in order, with empty bodies.
pub(crate) fn openers(line: &str) -> Result<Vec<Heredoc>, String> {
    let lexer = Lexer {
        raw_quotes: true,
        raw_escapes: true,
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

/// Parses one word as an opener: BuildKit's `^(\d*)<<(-?)([^<]*)$`, then the
/// name must lex to a single word; quoting any part of it turns expansion off.
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
    }

    #[test]
    fn ignores_what_is_not_an_opener() {
        assert!(names("RUN cat<<EOF").is_empty());
        assert!(names("RUN echo '<<EOF'").is_empty());
        assert!(names("RUN echo a<<b <<").is_empty());
        assert!(names("RUN echo 'open").is_empty());
    }
}
