//! Word expansion, as BuildKit's shell lexer (`frontend/dockerfile/shell`)
//! does it: `$V`, `${V}`, `${V:-w}`, `${V-w}`, `${V:+w}`, `${V+w}`,
//! `${V:?msg}`, `${V?msg}`, `${V#p}`, `${V##p}`, `${V%p}`, `${V%%p}`,
//! `${V/p/r}`, `${V//p/r}`, quotes and the escape token.
//!
//! The parser never calls this: the planner expands each instruction that
//! the Dockerfile reference lists ([`expands`]) with the ARG and ENV values in
//! scope at that point of its stage.

use regex::Regex;
use std::collections::BTreeSet;
use thiserror::Error;

/// Instructions whose arguments are expanded (the reference's list; ONBUILD
/// triggers are expanded when they run).
pub const EXPANDED: [&str; 11] = [
    "add",
    "arg",
    "copy",
    "env",
    "expose",
    "from",
    "label",
    "stopsignal",
    "user",
    "volume",
    "workdir",
];

/// True when `instruction` (any case) has its arguments expanded.
pub fn expands(instruction: &str) -> bool {
    EXPANDED.contains(&instruction.to_ascii_lowercase().as_str())
}

/// Why a word could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ShellError {
    /// `${` without its `}`.
    #[error("syntax error: missing '}}'")]
    MissingBrace,
    /// `${}`, `${:x}` and the like.
    #[error("syntax error: bad substitution")]
    BadSubstitution,
    /// A modifier kiln does not know (`${V!x}`).
    #[error("unsupported modifier ({0}) in substitution")]
    UnsupportedModifier(String),
    /// A quote that is never closed.
    #[error("unexpected end of statement while looking for matching {0}")]
    Unterminated(&'static str),
    /// `${V:?msg}` with V unset or empty.
    #[error("{name}: {message}")]
    Required {
        /// The variable.
        name: String,
        /// The message given, or the default one.
        message: String,
    },
    /// `${A:-${B:-${C...}}}` nested deeper than [`MAX_DEPTH`].
    #[error("substitutions nested more than {MAX_DEPTH} deep")]
    TooDeep,
    /// A `#`, `%` or `/` pattern that does not compile.
    #[error("invalid pattern {0:?}")]
    BadPattern(String),
}

/// How deep `${...}` may nest: the lexer recurses once per level, and no
/// real Dockerfile comes near this.
pub const MAX_DEPTH: usize = 100;

/// The result of expanding one word.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expansion {
    /// The expanded word.
    pub value: String,
    /// Names that were looked up and set (for "unused build arg" checks).
    pub used: BTreeSet<String>,
    /// Names that were looked up and not set (for "undefined variable" lints).
    pub unset: BTreeSet<String>,
}

/// A configured lexer. The defaults are those of word expansion.
#[derive(Debug, Clone, Copy)]
pub struct Lexer {
    /// The escape token (`\` or `` ` ``).
    pub escape: char,
    /// Keep quote characters in the result.
    pub raw_quotes: bool,
    /// Keep escape tokens in the result.
    pub raw_escapes: bool,
    /// Leave references to unset variables as written.
    pub skip_unset: bool,
    /// Treat quotes as ordinary characters (BuildKit's SkipProcessQuotes,
    /// used for heredoc bodies, where quotes are file content).
    pub skip_quotes: bool,
}

impl Lexer {
    /// A lexer for word expansion with escape token `escape`.
    pub fn new(escape: char) -> Self {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_unset: false,
            skip_quotes: false,
        }
    }

    /// Expands `word` into one string (quotes removed, blanks kept).
    pub fn process_word<'e>(
        &self,
        word: &str,
        env: &dyn Fn(&str) -> Option<&'e str>,
    ) -> Result<Expansion, ShellError> {
        let mut run = Run::new(self, word, env);
        let (value, _) = run.process_stop_on(None)?;
        Ok(Expansion {
            value,
            used: run.used,
            unset: run.unset,
        })
    }

    /// Expands `word` and splits the result into words at unquoted blanks.
    pub fn process_words<'e>(
        &self,
        word: &str,
        env: &dyn Fn(&str) -> Option<&'e str>,
    ) -> Result<Vec<String>, ShellError> {
        let mut run = Run::new(self, word, env);
        let (_, words) = run.process_stop_on(None)?;
        Ok(words)
    }
}

/// Go's unicode.IsSpace (White_Space).
fn is_space(c: char) -> bool {
    c.is_whitespace()
}

#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, c: char) {
        if is_space(c) {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(c);
        }
    }

    fn add_raw_char(&mut self, c: char) {
        self.word.push(c);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }

    fn add_raw_string(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(self.word);
        }
        self.words
    }
}

struct Run<'l, 'e, 'f> {
    lex: &'l Lexer,
    chars: Vec<char>,
    pos: usize,
    env: &'f dyn Fn(&str) -> Option<&'e str>,
    used: BTreeSet<String>,
    unset: BTreeSet<String>,
    depth: usize,
}

impl<'l, 'e, 'f> Run<'l, 'e, 'f> {
    fn new(lex: &'l Lexer, word: &str, env: &'f dyn Fn(&str) -> Option<&'e str>) -> Self {
        Run {
            lex,
            chars: word.chars().collect(),
            pos: 0,
            env,
            used: BTreeSet::new(),
            unset: BTreeSet::new(),
            depth: 0,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        self.pos += usize::from(c.is_some());
        c
    }

    fn get_env(&mut self, name: &str) -> Option<String> {
        match (self.env)(name) {
            Some(v) => {
                self.used.insert(name.to_string());
                Some(v.to_string())
            }
            None => {
                self.unset.insert(name.to_string());
                None
            }
        }
    }

    /// Processes up to `stop` (consumed) or the end; returns the word and its split.
    fn process_stop_on(&mut self, stop: Option<char>) -> Result<(String, Vec<String>), ShellError> {
        self.process_stop_on_any(stop, false)
    }

    fn process_stop_on_any(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), ShellError> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(c) = self.peek() {
            if Some(c) == stop {
                self.pos += 1;
                return Ok((result, words.finish()));
            }
            match c {
                '\'' | '"' if !self.lex.skip_quotes => {
                    let s = if c == '\'' {
                        self.single_quote()?
                    } else {
                        self.double_quote()?
                    };
                    result.push_str(&s);
                    words.add_raw_string(&s);
                }
                '$' => {
                    let s = self.dollar()?;
                    result.push_str(&s);
                    words.add_string(&s);
                }
                // BuildKit's processPossibleHeredoc: the blanks after `<<`
                // stay in its word, so `<< EOF` is one word (a heredoc
                // opener). The text itself is unchanged.
                '<' if self.chars.get(self.pos + 1) == Some(&'<') => {
                    let mut s = String::from("<<");
                    self.pos += 2;
                    while let Some(blank) = self.peek().filter(|c| matches!(c, '\t' | '\r' | ' ')) {
                        self.pos += 1;
                        s.push(blank);
                    }
                    result.push_str(&s);
                    words.add_raw_string(&s);
                }
                _ => {
                    self.pos += 1;
                    if c == self.lex.escape {
                        if self.lex.raw_escapes || raw_escapes {
                            words.add_raw_char(c);
                            result.push(c);
                        }
                        let Some(escaped) = self.next() else { break };
                        words.add_raw_char(escaped);
                        result.push(escaped);
                    } else {
                        words.add_char(c);
                        result.push(c);
                    }
                }
            }
        }
        if stop.is_some() {
            return Err(ShellError::MissingBrace);
        }
        Ok((result, words.finish()))
    }

    fn single_quote(&mut self) -> Result<String, ShellError> {
        let mut out = String::new();
        let open = self.next();
        if self.lex.raw_quotes {
            out.extend(open);
        }
        loop {
            match self.next() {
                None => return Err(ShellError::Unterminated("single-quote")),
                Some('\'') => {
                    if self.lex.raw_quotes {
                        out.push('\'');
                    }
                    return Ok(out);
                }
                Some(c) => out.push(c),
            }
        }
    }

    fn double_quote(&mut self) -> Result<String, ShellError> {
        let mut out = String::new();
        let open = self.next();
        if self.lex.raw_quotes {
            out.extend(open);
        }
        loop {
            match self.peek() {
                None => return Err(ShellError::Unterminated("double-quote")),
                Some('"') => {
                    self.pos += 1;
                    if self.lex.raw_quotes {
                        out.push('"');
                    }
                    return Ok(out);
                }
                Some('$') => out.push_str(&self.dollar()?),
                Some(c) => {
                    self.pos += 1;
                    if c == self.lex.escape {
                        match self.peek() {
                            None => continue,
                            Some(n) if n == '"' || n == '$' || n == self.lex.escape => {
                                if self.lex.raw_escapes {
                                    out.push(c);
                                }
                                self.pos += 1;
                                out.push(n);
                            }
                            Some(_) => out.push(c),
                        }
                    } else {
                        out.push(c);
                    }
                }
            }
        }
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if name.is_empty() && c.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    self.pos += 1;
                    name.push(d);
                }
                return name;
            }
            if name.is_empty() && matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.pos += 1;
                return c.to_string();
            }
            if !(c.is_alphanumeric() || c == '_') {
                break;
            }
            self.pos += 1;
            name.push(c);
        }
        name
    }

    fn dollar(&mut self) -> Result<String, ShellError> {
        if self.depth >= MAX_DEPTH {
            return Err(ShellError::TooDeep);
        }
        self.depth += 1;
        let result = self.dollar_inner();
        self.depth -= 1;
        result
    }

    fn dollar_inner(&mut self) -> Result<String, ShellError> {
        self.pos += 1; // the '$'
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.lex.skip_unset => format!("${name}"),
                None => String::new(),
            });
        }
        self.pos += 1; // the '{'
        match self.peek() {
            None => return Err(ShellError::MissingBrace),
            Some('{' | '}' | ':') => return Err(ShellError::BadSubstitution),
            _ => {}
        }
        let name = self.name();
        let Some(mut op) = self.next() else {
            return Err(ShellError::MissingBrace);
        };
        let mut ops = op.to_string();
        let mut null_is_unset = false;
        match op {
            '}' => {
                return Ok(match self.get_env(&name) {
                    Some(v) => v,
                    None if self.lex.skip_unset => format!("${{{name}}}"),
                    None => String::new(),
                });
            }
            ':' => {
                null_is_unset = true;
                op = self.next().ok_or(ShellError::MissingBrace)?;
                ops.push(op);
            }
            '/' => return self.replace(&name),
            _ => {}
        }
        if !matches!(op, '+' | '-' | '?' | '#' | '%') {
            return Err(ShellError::UnsupportedModifier(ops));
        }
        let pattern_op = matches!(op, '#' | '%');
        if null_is_unset && pattern_op {
            return Err(ShellError::UnsupportedModifier(ops));
        }
        let (mut word, _) = self.process_stop_on_any(Some('}'), pattern_op)?;
        let set = self.get_env(&name);
        if set.is_none() && self.lex.skip_unset {
            return Ok(format!("${{{name}{ops}{word}}}"));
        }
        let empty = set.as_deref().is_none_or(|v| null_is_unset && v.is_empty());
        match op {
            '-' => Ok(if empty { word } else { set.unwrap_or_default() }),
            '+' => Ok(if empty { String::new() } else { word }),
            '?' => match set {
                None => Err(ShellError::Required {
                    name,
                    message: if word.is_empty() {
                        "is not allowed to be unset".into()
                    } else {
                        word
                    },
                }),
                Some(v) if null_is_unset && v.is_empty() => Err(ShellError::Required {
                    name,
                    message: if word.is_empty() {
                        "is not allowed to be empty".into()
                    } else {
                        word
                    },
                }),
                Some(v) => Ok(v),
            },
            _ => {
                let greedy = word.starts_with(op);
                if greedy {
                    word.remove(0);
                }
                let value = set.unwrap_or_default();
                if op == '#' {
                    trim_prefix(&word, &value, greedy)
                } else {
                    trim_suffix(&word, &value, greedy)
                }
            }
        }
    }

    fn replace(&mut self, name: &str) -> Result<String, ShellError> {
        let all = self.peek() == Some('/');
        if all {
            self.pos += 1;
        }
        let (pattern, _) = self.process_stop_on_any(Some('/'), true)?;
        let (replacement, _) = self.process_stop_on_any(Some('}'), true)?;
        let Some(value) = self.get_env(name) else {
            if self.lex.skip_unset {
                return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
            }
            return Ok(String::new());
        };
        let re = pattern_regex(&pattern, true, false)?;
        Ok(if all {
            re.replace_all(&value, regex::NoExpand(&replacement))
                .into_owned()
        } else {
            re.replace(&value, regex::NoExpand(&replacement))
                .into_owned()
        })
    }
}

/// A shell pattern (`*`, `?`, `[...]`, `\x`) as a regex.
fn pattern_regex(pattern: &str, greedy: bool, anchored: bool) -> Result<Regex, ShellError> {
    let mut re = String::from(if anchored { "^" } else { "" });
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => re.push_str(if greedy { ".*" } else { ".*?" }),
            '?' => re.push('.'),
            '\\' => match chars.next() {
                Some(n) => re.push_str(&regex::escape(&n.to_string())),
                None => re.push_str("\\\\"),
            },
            '[' => {
                let mut class = String::from("[");
                if chars.peek() == Some(&'!') {
                    chars.next();
                    class.push('^');
                }
                let mut closed = false;
                for n in chars.by_ref() {
                    if n == ']' {
                        closed = true;
                        break;
                    }
                    if n == '\\' || n == '[' {
                        class.push('\\');
                    }
                    class.push(n);
                }
                if !closed {
                    return Err(ShellError::BadPattern(pattern.to_string()));
                }
                class.push(']');
                re.push_str(&class);
            }
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    Regex::new(&re).map_err(|_| ShellError::BadPattern(pattern.to_string()))
}

fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> Result<String, ShellError> {
    let re = pattern_regex(pattern, greedy, true)?;
    Ok(match re.find(value) {
        Some(m) => value[m.end()..].to_string(),
        None => value.to_string(),
    })
}

/// Shortest (or longest) suffix removal: the pattern and the value are both
/// reversed so that a leftmost regex search finds it, as BuildKit does.
fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> Result<String, ShellError> {
    let reversed_value: String = value.chars().rev().collect();
    let trimmed = trim_prefix(&reverse_pattern(pattern), &reversed_value, greedy)?;
    Ok(trimmed.chars().rev().collect())
}

/// Reverses a shell pattern, keeping `\x` escapes and `[...]` classes whole.
fn reverse_pattern(pattern: &str) -> String {
    let mut tokens: Vec<String> = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        let mut token = c.to_string();
        match c {
            '\\' => token.extend(chars.next()),
            '[' => {
                for n in chars.by_ref() {
                    token.push(n);
                    if n == ']' {
                        break;
                    }
                }
            }
            _ => {}
        }
        tokens.push(token);
    }
    tokens.into_iter().rev().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(word: &str) -> Result<String, ShellError> {
        let env = |name: &str| match name {
            "A" => Some("apple"),
            "E" => Some(""),
            "P" => Some("/usr/local/bin"),
            "S" => Some("a b"),
            _ => None,
        };
        Lexer::new('\\').process_word(word, &env).map(|e| e.value)
    }

    #[test]
    fn expansion_table() {
        let cases = [
            ("$A", "apple"),
            ("${A}", "apple"),
            ("x${A}y", "xappley"),
            ("$A$A", "appleapple"),
            ("$NOPE", ""),
            ("${NOPE:-dflt}", "dflt"),
            ("${E:-dflt}", "dflt"),
            ("${E-dflt}", ""),
            ("${NOPE-dflt}", "dflt"),
            ("${A:-dflt}", "apple"),
            ("${A:+alt}", "alt"),
            ("${E:+alt}", ""),
            ("${E+alt}", "alt"),
            ("${NOPE+alt}", ""),
            ("${A:?boom}", "apple"),
            ("\\$A", "$A"),
            ("'$A'", "$A"),
            ("\"$A\"", "apple"),
            ("\"\\$A\"", "$A"),
            ("\"a\\b\"", "a\\b"),
            ("a\\ b", "a b"),
            ("$", "$"),
            ("$1x", "x"),
            ("${NOPE:-$A}", "apple"),
            ("${NOPE:-'$A'}", "$A"),
            ("${P#*/}", "usr/local/bin"),
            ("${P##*/}", "bin"),
            ("${P%/*}", "/usr/local"),
            ("${P%%/l*}", "/usr"),
            ("${P/local/opt}", "/usr/opt/bin"),
            ("${P//\\//:}", ":usr:local:bin"),
            ("${A/p*/P}", "aP"),
        ];
        for (input, want) in cases {
            assert_eq!(expand(input).as_deref(), Ok(want), "expanding {input:?}");
        }
    }

    #[test]
    fn expansion_errors() {
        assert_eq!(expand("${A"), Err(ShellError::MissingBrace));
        assert_eq!(expand("${}"), Err(ShellError::BadSubstitution));
        assert_eq!(expand("${:a}"), Err(ShellError::BadSubstitution));
        assert_eq!(
            expand("${A!x}"),
            Err(ShellError::UnsupportedModifier("!".into()))
        );
        assert_eq!(
            expand("'abc"),
            Err(ShellError::Unterminated("single-quote"))
        );
        assert_eq!(
            expand("\"abc"),
            Err(ShellError::Unterminated("double-quote"))
        );
        assert_eq!(
            expand("${NOPE:?must be set}").unwrap_err().to_string(),
            "NOPE: must be set"
        );
        assert_eq!(
            expand("${E:?}").unwrap_err().to_string(),
            "E: is not allowed to be empty"
        );
        assert_eq!(
            expand("${NOPE?}").unwrap_err().to_string(),
            "NOPE: is not allowed to be unset"
        );
    }

    #[test]
    fn words_split_at_unquoted_blanks_only() {
        let env = |name: &str| (name == "S").then_some("a b");
        let words = Lexer::new('\\')
            .process_words("x \"y z\" $S 'q r'", &env)
            .unwrap();
        assert_eq!(words, ["x", "y z", "a", "b", "q r"]);
    }

    #[test]
    fn blanks_after_double_angle_stay_in_the_word() {
        let env = |_: &str| None;
        let lex = Lexer::new('\\');
        assert_eq!(
            lex.process_words("RUN <<  EOF x 3<<\tY a<b <<- Z", &env)
                .unwrap(),
            ["RUN", "<<  EOF", "x", "3<<\tY", "a<b", "<<-", "Z"]
        );
        // The text itself is unchanged.
        assert_eq!(lex.process_word("a <<  b", &env).unwrap().value, "a <<  b");
    }

    #[test]
    fn skip_quotes_keeps_quotes_as_text() {
        let env = |name: &str| (name == "A").then_some("1");
        let lex = Lexer {
            skip_quotes: true,
            ..Lexer::new('\\')
        };
        assert_eq!(
            lex.process_word("'$A' \"$A\" \\\"", &env).unwrap().value,
            "'1' \"1\" \""
        );
        assert_eq!(lex.process_word("${X:-'a'}", &env).unwrap().value, "'a'");
    }

    #[test]
    fn records_used_and_unset_names() {
        let env = |name: &str| (name == "A").then_some("1");
        let e = Lexer::new('\\').process_word("$A ${B:-x}", &env).unwrap();
        assert_eq!(e.used.into_iter().collect::<Vec<_>>(), ["A"]);
        assert_eq!(e.unset.into_iter().collect::<Vec<_>>(), ["B"]);
    }

    #[test]
    fn backtick_escape() {
        let env = |_: &str| None;
        assert_eq!(
            Lexer::new('`')
                .process_word("`$A a\\b", &env)
                .unwrap()
                .value,
            "$A a\\b"
        );
    }

    #[test]
    fn skip_unset_keeps_references() {
        let mut lex = Lexer::new('\\');
        lex.skip_unset = true;
        let env = |_: &str| None;
        assert_eq!(
            lex.process_word("$X ${Y} ${Z:-w}", &env).unwrap().value,
            "$X ${Y} ${Z:-w}"
        );
    }
}
