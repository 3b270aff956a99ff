//! `.dockerignore`, with the rules of moby's `ignorefile` and
//! `patternmatcher`, which BuildKit uses:
//!
//! - one pattern a line; lines starting with `#` are comments; blanks trimmed;
//! - patterns are cleaned like paths (`./a//b/` → `a/b`) and a leading `/` is
//!   dropped: every pattern is relative to the context root;
//! - `*` and `?` never cross `/`; `**` crosses any number of directories;
//!   `[...]` is a class; `\` escapes;
//! - a pattern that matches a directory matches everything below it;
//! - `!pattern` re-includes; the last pattern that matches decides.
//!
//! `<Dockerfile>.dockerignore` next to the Dockerfile takes precedence over
//! the context's `.dockerignore`.

use crate::sandbox::fs::Root;
use regex::Regex;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Why an ignore file could not be used.
#[derive(Debug, Error)]
pub enum IgnoreError {
    /// The file exists but could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The ignore file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not a valid pattern.
    #[error("{path}:{line}: invalid pattern {pattern:?}: {reason}")]
    Pattern {
        /// The ignore file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The pattern as written.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MatchType {
    Exact,
    Prefix,
    Suffix,
    Regex,
}

#[derive(Clone, Debug)]
struct Pattern {
    cleaned: String,
    exclusion: bool,
    kind: MatchType,
    regex: Option<Regex>,
}

impl Pattern {
    fn compile(cleaned: &str, exclusion: bool) -> Result<Pattern, String> {
        check_syntax(cleaned)?;
        let mut re = String::from("^");
        let mut kind = MatchType::Exact;
        let chars: Vec<char> = cleaned.chars().collect();
        let mut i = 0;
        let mut index = 0;
        while i < chars.len() {
            let c = chars[i];
            i += 1;
            match c {
                '*' if chars.get(i) == Some(&'*') => {
                    i += 1;
                    if chars.get(i) == Some(&'/') {
                        i += 1;
                    }
                    if i == chars.len() {
                        // `**` at the end matches everything below, like .gitignore.
                        if kind == MatchType::Exact {
                            kind = MatchType::Prefix;
                        } else {
                            re.push_str(".*");
                            kind = MatchType::Regex;
                        }
                    } else {
                        re.push_str("(.*/)?");
                        kind = MatchType::Regex;
                    }
                    if index == 0 {
                        kind = MatchType::Suffix;
                    }
                }
                '*' => {
                    re.push_str("[^/]*");
                    kind = MatchType::Regex;
                }
                '?' => {
                    re.push_str("[^/]");
                    kind = MatchType::Regex;
                }
                '.' | '+' | '(' | ')' | '|' | '{' | '}' | '$' => {
                    re.push('\\');
                    re.push(c);
                }
                '\\' => match chars.get(i) {
                    Some(&n) => {
                        i += 1;
                        re.push_str(&regex::escape(&n.to_string()));
                    }
                    None => re.push_str("\\\\"),
                },
                '[' | ']' => {
                    re.push(c);
                    kind = MatchType::Regex;
                }
                // Passed through as moby does, so `-` forms ranges in classes.
                c => re.push(c),
            }
            index += 1;
        }
        let regex = if kind == MatchType::Regex {
            re.push('$');
            Some(Regex::new(&re).map_err(|e| e.to_string())?)
        } else {
            None
        };
        Ok(Pattern {
            cleaned: cleaned.to_string(),
            exclusion,
            kind,
            regex,
        })
    }

    fn matches(&self, path: &str) -> bool {
        match self.kind {
            MatchType::Exact => path == self.cleaned,
            MatchType::Prefix => path.starts_with(&self.cleaned[..self.cleaned.len() - 2]),
            MatchType::Suffix => {
                let suffix = &self.cleaned[2..];
                path.ends_with(suffix) || suffix.strip_prefix('/').is_some_and(|s| path == s)
            }
            MatchType::Regex => self.regex.as_ref().is_some_and(|r| r.is_match(path)),
        }
    }
}

/// filepath.Match's syntax check: classes must close, `\` must escape something.
fn check_syntax(pattern: &str) -> Result<(), String> {
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.next().is_none() => return Err("trailing backslash".into()),
            '[' => {
                let mut closed = false;
                let mut first = true;
                while let Some(n) = chars.next() {
                    if n == ']' && !first {
                        closed = true;
                        break;
                    }
                    if n == '\\' && chars.next().is_none() {
                        break;
                    }
                    first = n == '^' && first;
                }
                if !closed {
                    return Err("unclosed character class".into());
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Go's `path.Clean`: collapse `//`, drop `.`, resolve `..` lexically.
pub fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// A compiled ignore file.
#[derive(Clone, Debug, Default)]
pub struct Matcher {
    patterns: Vec<Pattern>,
    /// Where the patterns came from, when they came from a file.
    pub source: Option<PathBuf>,
}

impl Matcher {
    /// Compiles the text of an ignore file; `path` is only for errors.
    pub fn parse(text: &str, path: &Path) -> Result<Matcher, IgnoreError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut patterns = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            if raw.starts_with('#') {
                continue;
            }
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            let (exclusion, body) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let bad = |reason: &str| IgnoreError::Pattern {
                path: path.to_path_buf(),
                line: n + 1,
                pattern: raw.to_string(),
                reason: reason.to_string(),
            };
            if exclusion && body.is_empty() {
                return Err(bad("an exclusion needs a pattern after '!'"));
            }
            let mut cleaned = clean(body);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
            patterns.push(Pattern::compile(&cleaned, exclusion).map_err(|e| bad(&e))?);
        }
        Ok(Matcher {
            patterns,
            source: Some(path.to_path_buf()),
        })
    }

    /// Reads the ignore file for a build: `<dockerfile>.dockerignore` if it
    /// exists, else `<context>/.dockerignore`, else nothing is ignored.
    pub fn for_build(context: &Path, dockerfile: Option<&Path>) -> Result<Matcher, IgnoreError> {
        let specific = dockerfile.map(|d| {
            let mut name = d.as_os_str().to_owned();
            name.push(".dockerignore");
            PathBuf::from(name)
        });
        let found = |path: PathBuf, read: std::io::Result<Vec<u8>>| match read {
            Ok(bytes) => Some(Matcher::parse(&String::from_utf8_lossy(&bytes), &path)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => Some(Err(IgnoreError::Read { path, source })),
        };
        // `<Dockerfile>.dockerignore` is read in the Dockerfile's own
        // directory: a symlink there cannot lead to a host file, a FIFO or
        // a device.
        let beside = |path: &Path| -> std::io::Result<Vec<u8>> {
            let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
            let root = Root::open(dir.unwrap_or(Path::new(".")))?;
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            let mut bytes = Vec::new();
            root.open_regular(&name, true)?.read_to_end(&mut bytes)?;
            Ok(bytes)
        };
        if let Some(path) = specific
            && let Some(m) = found(path.clone(), beside(&path))
        {
            return m;
        }
        // The Dockerfile's path is the user's; the context's .dockerignore
        // is the context's, read inside it (a symlink out of the context
        // finds nothing, as in BuildKit).
        let inside = Root::open(context).and_then(|root| {
            let mut bytes = Vec::new();
            root.open_regular(".dockerignore", true)?
                .read_to_end(&mut bytes)?;
            Ok(bytes)
        });
        if let Some(m) = found(context.join(".dockerignore"), inside) {
            return m;
        }
        Ok(Matcher::default())
    }

    /// True when `path` (relative to the context, `/`-separated) is excluded
    /// from the context: by a pattern matching it or one of its parents.
    pub fn is_ignored(&self, path: &str) -> bool {
        if self.patterns.is_empty() {
            return false;
        }
        let path = clean(path);
        let parents: Vec<&str> = match path.rfind('/') {
            Some(i) => path[..i].split('/').collect(),
            None => Vec::new(),
        };
        let mut matched = false;
        for pattern in &self.patterns {
            // An inclusion cannot change an excluded path and vice versa.
            if pattern.exclusion != matched {
                continue;
            }
            let mut hit = pattern.matches(&path);
            if !hit {
                hit = (1..=parents.len()).any(|n| pattern.matches(&parents[..n].join("/")));
            }
            if hit {
                matched = !pattern.exclusion;
            }
        }
        matched
    }

    /// BuildKit's CopyIgnoredFile judgement of a COPY source (cleaned,
    /// context-relative): none when an exception (`!pattern`) is present,
    /// which a static check cannot judge; the context root (`.`) only when
    /// a pattern excludes everything in it (`*`, `**`, `**/*`).
    pub fn lint_excludes(&self, path: &str) -> bool {
        if self.patterns.iter().any(|p| p.exclusion) {
            return false;
        }
        if path == "." || path == "/" {
            return self
                .patterns
                .iter()
                .any(|p| ["*", "**", "**/*"].contains(&p.cleaned.as_str()));
        }
        self.is_ignored(path)
    }

    /// True when an exception (`!pattern`) could take back something
    /// below the directory `dir`: a walk must then enter `dir` even though
    /// it is excluded (BuildKit's walker does, and makes the directory only
    /// when something below it is kept).
    pub fn may_take_below(&self, dir: &str) -> bool {
        let dir = clean(dir);
        let parts: Vec<&str> = dir.split('/').collect();
        self.patterns.iter().filter(|p| p.exclusion).any(|p| {
            if p.cleaned.contains("**") {
                return true;
            }
            let theirs: Vec<&str> = p.cleaned.split('/').collect();
            theirs.len() > parts.len()
                && parts.iter().zip(&theirs).all(|(ours, pattern)| {
                    Pattern::compile(pattern, false).is_ok_and(|c| c.matches(ours))
                })
        })
    }

    /// True when no pattern was given.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(text: &str) -> Matcher {
        Matcher::parse(text, Path::new(".dockerignore")).unwrap()
    }

    #[test]
    fn pattern_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("*.md", "README.md", true),
            ("*.md", "docs/README.md", false),
            ("**/*.md", "docs/a/README.md", true),
            ("**/*.md", "README.md", true),
            ("docs", "docs/a/b.txt", true),
            ("docs", "docsx", false),
            ("docs/**", "docs/a", true),
            ("docs/**", "docs", false),
            ("**", "anything/at/all", true),
            ("/build", "build/out", true),
            ("./build/", "build", true),
            ("a//b/../c", "a/c", true),
            ("file?.txt", "file1.txt", true),
            ("file?.txt", "file/.txt", false),
            ("[a-c].go", "b.go", true),
            ("[a-c].go", "d.go", false),
            ("[^a].go", "b.go", true),
            // moby quirk: an escape alone keeps the pattern an exact match.
            ("\\*.go", "*.go", false),
            ("\\*.go", "\\*.go", true),
            ("?\\*.go", "a*.go", true),
            ("?\\*.go", "ab.go", false),
            ("a.b", "axb", false),
            ("**/node_modules", "web/app/node_modules/x/y.js", true),
            ("a/**/b", "a/b", true),
            ("a/**/b", "a/x/y/b", true),
            ("a/**/b", "ab", false),
            ("#not-a-comment-here", "#not-a-comment-here", true),
        ];
        for (pattern, path, want) in cases {
            let matcher = if pattern.starts_with('#') {
                m(&format!(" {pattern}"))
            } else {
                m(pattern)
            };
            assert_eq!(
                matcher.is_ignored(path),
                *want,
                "pattern {pattern:?} on {path:?}"
            );
        }
    }

    #[test]
    fn exceptions_below_excluded_directories_are_reachable() {
        let m = m("docs\n!docs/keep.md\n*/tmp\n!*/tmp/x/y\n");
        assert!(m.is_ignored("docs") && m.may_take_below("docs"));
        assert!(!m.is_ignored("docs/keep.md"));
        assert!(m.is_ignored("docs/drop.md") && !m.may_take_below("docs/drop.md"));
        assert!(m.may_take_below("a/tmp") && m.may_take_below("a/tmp/x"));
        assert!(!m.may_take_below("a/tmp/x/y"));
        let anywhere = super::Matcher::parse("all\n!**/z\n", Path::new(".dockerignore")).unwrap();
        assert!(anywhere.may_take_below("all"));
        let plain = super::Matcher::parse("docs\n", Path::new(".dockerignore")).unwrap();
        assert!(!plain.may_take_below("docs"));
    }

    #[test]
    fn exceptions_and_last_match_wins() {
        let matcher = m("# comment\n*.md\n!README.md\n\ndocs\n!docs/keep.md\n");
        assert!(matcher.is_ignored("CHANGES.md"));
        assert!(!matcher.is_ignored("README.md"));
        assert!(matcher.is_ignored("docs/other.md"));
        assert!(!matcher.is_ignored("docs/keep.md"));
        assert!(!matcher.is_ignored("src/main.rs"));
        let later = m("!README.md\n*.md\n");
        assert!(later.is_ignored("README.md"));
    }

    #[test]
    fn rejects_bad_patterns() {
        let err = Matcher::parse("ok\n!\n", Path::new(".dockerignore")).unwrap_err();
        assert_eq!(
            err.to_string(),
            ".dockerignore:2: invalid pattern \"!\": an exclusion needs a pattern after '!'"
        );
        let err = Matcher::parse("[abc\n", Path::new(".dockerignore")).unwrap_err();
        assert_eq!(
            err.to_string(),
            ".dockerignore:1: invalid pattern \"[abc\": unclosed character class"
        );
    }

    #[test]
    fn dockerfile_specific_file_wins() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".dockerignore"), "a\n").unwrap();
        std::fs::write(dir.path().join("app.Dockerfile.dockerignore"), "b\n").unwrap();
        let df = dir.path().join("app.Dockerfile");
        let specific = Matcher::for_build(dir.path(), Some(&df)).unwrap();
        assert!(specific.is_ignored("b") && !specific.is_ignored("a"));
        let general = Matcher::for_build(dir.path(), Some(&dir.path().join("Dockerfile"))).unwrap();
        assert!(general.is_ignored("a") && !general.is_ignored("b"));
        let none = Matcher::for_build(&dir.path().join("nowhere"), None).unwrap();
        assert!(none.is_empty());
    }
}
