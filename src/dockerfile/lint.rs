//! Lint rules: things a Dockerfile may do but should not, as `docker build
//! --check` reports them. Rules are data ([`RULES`]); the `# check=` parser
//! directive skips rules (`skip=A,B` or `skip=all`) or turns warnings into
//! errors (`error=true`).

use super::shell::Lexer;
use super::source::Span;
use super::syntax::{Ast, Node};
use std::collections::BTreeSet;

/// A lint rule: its BuildKit name and what it is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    /// The rule's name, as `# check=skip=` names it.
    pub name: &'static str,
    /// One line on why it matters.
    pub description: &'static str,
}

/// Every rule kiln checks.
pub const RULES: [Rule; 19] = [
    Rule {
        name: "CopyIgnoredFile",
        description: "Attempting to Copy file that is excluded by .dockerignore",
    },
    Rule {
        name: "StageNameCasing",
        description: "Stage names should be lowercase",
    },
    Rule {
        name: "FromAsCasing",
        description: "The 'as' keyword should match the case of the 'from' keyword",
    },
    Rule {
        name: "NoEmptyContinuation",
        description: "Empty continuation lines will become errors in a future release",
    },
    Rule {
        name: "ConsistentInstructionCasing",
        description: "All commands within the Dockerfile should use the same casing",
    },
    Rule {
        name: "ReservedStageName",
        description: "Reserved words should not be used as stage names",
    },
    Rule {
        name: "JSONArgsRecommended",
        description: "JSON arguments recommended for ENTRYPOINT/CMD to prevent unintended behavior related to OS signals",
    },
    Rule {
        name: "DuplicateStageName",
        description: "Stage names should be unique",
    },
    Rule {
        name: "MaintainerDeprecated",
        description: "The MAINTAINER instruction is deprecated, use a label instead",
    },
    Rule {
        name: "LegacyKeyValueFormat",
        description: "Legacy key/value format with whitespace separator should not be used",
    },
    Rule {
        name: "WorkdirRelativePath",
        description: "Relative workdir without an absolute workdir declared within the build can have unexpected results if the base image changes",
    },
    Rule {
        name: "MultipleInstructionsDisallowed",
        description: "Multiple instructions of the same type should not be used in the same stage",
    },
    Rule {
        name: "UndefinedArgInFrom",
        description: "FROM command must use declared ARGs",
    },
    Rule {
        name: "SecretsUsedInArgOrEnv",
        description: "Sensitive data should not be used in the ARG or ENV commands",
    },
    Rule {
        name: "FromPlatformFlagConstDisallowed",
        description: "FROM --platform flag should not use a constant value",
    },
    Rule {
        name: "InvalidDefaultArgInFrom",
        description: "Default value for global ARG results in an empty or invalid base image name",
    },
    Rule {
        name: "RedundantTargetPlatform",
        description: "Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior",
    },
    Rule {
        name: "ExposeProtoCasing",
        description: "Protocol in EXPOSE instruction should be lowercase",
    },
    Rule {
        name: "ExposeInvalidFormat",
        description: "IP address and host-port mapping should not be used in EXPOSE instruction. This will become an error in a future release",
    },
];

/// ARGs every build defines without a declaration.
const AUTOMATIC_ARGS: [&str; 8] = [
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDARCH",
    "BUILDVARIANT",
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETARCH",
    "TARGETVARIANT",
];

/// One finding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The rule's name.
    pub rule: &'static str,
    /// What is wrong here.
    pub message: String,
    /// Where.
    pub span: Span,
}

/// What the `# check=` directive asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Rules not to report.
    pub skip: BTreeSet<String>,
    /// `skip=all`.
    pub skip_all: bool,
    /// `error=true`: findings fail the check.
    pub error: bool,
}

impl Config {
    /// Reads `skip=A,B;error=true` (unknown keys are ignored, as BuildKit does).
    pub fn from_directive(value: &str) -> Config {
        let mut config = Config::default();
        for part in value.split(';') {
            let Some((key, val)) = part.split_once('=') else {
                continue;
            };
            match key.trim().to_ascii_lowercase().as_str() {
                "skip" => {
                    for rule in val.split(',').map(str::trim).filter(|r| !r.is_empty()) {
                        if rule.eq_ignore_ascii_case("all") {
                            config.skip_all = true;
                        } else {
                            config.skip.insert(rule.to_string());
                        }
                    }
                }
                "error" => config.error = val.trim().eq_ignore_ascii_case("true"),
                _ => {}
            }
        }
        config
    }

    /// The configuration a file's directives give.
    pub fn of(ast: &Ast) -> Config {
        ast.directives
            .iter()
            .find(|d| d.name == "check")
            .map(|d| Config::from_directive(&d.value))
            .unwrap_or_default()
    }

    fn wants(&self, rule: &str) -> bool {
        !self.skip_all && !self.skip.contains(rule)
    }
}

/// Runs every rule over `ast`; findings come in source order, skipped rules left out.
pub fn lint(ast: &Ast) -> Vec<Finding> {
    lint_with_context(ast, None)
}

/// [`lint`], plus the rules that need the build context: `ignored` says
/// whether a context path is excluded by `.dockerignore`.
pub fn lint_with_context(ast: &Ast, ignored: Option<&dyn Fn(&str) -> bool>) -> Vec<Finding> {
    let config = Config::of(ast);
    let mut out = Vec::new();
    let mut push = |rule: &'static str, message: String, span: Span| {
        if config.wants(rule) {
            out.push(Finding {
                rule,
                message,
                span,
            });
        }
    };
    for warning in &ast.warnings {
        push(
            "NoEmptyContinuation",
            "Empty continuation line".into(),
            warning.span,
        );
    }

    let uppercase = ast
        .nodes
        .iter()
        .filter(|n| n.keyword == n.keyword.to_uppercase())
        .count();
    let majority_upper = uppercase * 2 >= ast.nodes.len();
    let mut global_args: BTreeSet<String> = BTreeSet::new();
    // Their default values (an ARG without one expands to nothing).
    let mut global_defaults: std::collections::BTreeMap<String, String> =
        std::collections::BTreeMap::new();
    let mut seen_from = false;
    let mut stage = StageState::default();
    let mut stage_names: BTreeSet<String> = BTreeSet::new();
    // The stages that set a SHELL, and the current stage's name.
    let mut shell_stages: BTreeSet<String> = BTreeSet::new();
    let mut stage_name: Option<String> = None;
    for node in &ast.nodes {
        let name = node.name.clone();
        let want = if majority_upper {
            node.keyword.to_uppercase()
        } else {
            node.keyword.to_lowercase()
        };
        if node.keyword != want {
            push(
                "ConsistentInstructionCasing",
                format!(
                    "Command '{}' should match the case of the command majority ({})",
                    node.keyword,
                    if majority_upper {
                        "uppercase"
                    } else {
                        "lowercase"
                    }
                ),
                node.keyword_span,
            );
        }
        match name.as_str() {
            "from" => {
                if let [_, _, name] = node.args.as_slice()
                    && !stage_names.insert(name.to_lowercase())
                {
                    push(
                        "DuplicateStageName",
                        format!(
                            "Duplicate stage name {:?}, stage names should be unique",
                            name.to_lowercase()
                        ),
                        node.args_span,
                    );
                }
                seen_from = true;
                stage.flush(&mut push);
                stage = StageState::default();
                let base = node.args.first().map(|b| b.to_lowercase());
                stage.shell = base.is_some_and(|b| shell_stages.contains(&b));
                stage_name = match node.args.as_slice() {
                    [_, _, name] => Some(name.to_lowercase()),
                    _ => None,
                };
                lint_from(node, &global_args, &mut push);
                lint_default_base(node, &global_defaults, &mut push);
            }
            "arg" if !seen_from => {
                let lexer = Lexer::new('\\');
                for a in &node.args {
                    let (name, default) = a.split_once('=').unwrap_or((a, ""));
                    // A default's quotes are the shell's (`"box:"` is box:),
                    // and it may name an earlier global ARG.
                    let value = lexer
                        .process_word(default, &|n| global_defaults.get(n).map(String::as_str))
                        .map(|e| e.value)
                        .unwrap_or_default();
                    global_defaults.insert(name.to_string(), value);
                }
                global_args.extend(
                    node.args
                        .iter()
                        .map(|a| a.split('=').next().unwrap_or(a).to_string()),
                );
            }
            "shell" => {
                stage.shell = true;
                if let Some(n) = &stage_name {
                    shell_stages.insert(n.clone());
                }
            }
            "cmd" | "entrypoint" | "healthcheck" => {
                if name != "healthcheck" && !node.json && !node.args.is_empty() && !stage.shell {
                    push(
                        "JSONArgsRecommended",
                        format!(
                            "JSON arguments recommended for {} to prevent unintended behavior related to OS signals",
                            node.keyword.to_uppercase()
                        ),
                        node.args_span,
                    );
                }
                stage
                    .repeated
                    .push((node.keyword.to_uppercase(), node.keyword_span));
            }
            "copy" | "add" if ignored.is_some() => {
                if let Some(ignored) = ignored {
                    for src in context_sources(node) {
                        if ignored(&src) {
                            push(
                                "CopyIgnoredFile",
                                format!(
                                    "Attempting to Copy file {src:?} that is excluded by .dockerignore"
                                ),
                                node.args_span,
                            );
                        }
                    }
                }
            }
            "expose" => {
                for port in &node.args {
                    // Variables are checked once expanded, at build time.
                    if port.contains('$') {
                        continue;
                    }
                    if port.contains(':') {
                        push(
                            "ExposeInvalidFormat",
                            format!(
                                "EXPOSE instruction should not define an IP address or host-port mapping, found '{port}'"
                            ),
                            node.args_span,
                        );
                    }
                    if let Some((_, proto)) = port.rsplit_once('/')
                        && proto != proto.to_lowercase()
                    {
                        push(
                            "ExposeProtoCasing",
                            format!(
                                "Defined protocol '{port}' in EXPOSE instruction should be lowercase"
                            ),
                            node.args_span,
                        );
                    }
                }
            }
            "maintainer" => push(
                "MaintainerDeprecated",
                "Maintainer instruction is deprecated in favor of using label".into(),
                node.keyword_span,
            ),
            "workdir" => {
                if let Some(dir) = node.args.first() {
                    if dir.starts_with('/') || dir.starts_with('$') {
                        stage.absolute_workdir = true;
                    } else if !stage.absolute_workdir {
                        push(
                            "WorkdirRelativePath",
                            format!(
                                "Relative workdir {dir:?} can have unexpected results if the base image changes"
                            ),
                            node.args_span,
                        );
                    }
                }
            }
            _ => {}
        }
        if matches!(name.as_str(), "env" | "label")
            && node.args.len() == 3
            && node.args[2].is_empty()
        {
            let kw = node.keyword.to_uppercase();
            push(
                "LegacyKeyValueFormat",
                format!(
                    "\"{kw} key=value\" should be used instead of legacy \"{kw} key value\" format"
                ),
                node.args_span,
            );
        }
        if matches!(name.as_str(), "env" | "arg") {
            let keys: Vec<&String> = if name == "env" {
                node.args.iter().step_by(3).collect()
            } else {
                node.args.iter().collect()
            };
            for key in keys {
                let key = key.split('=').next().unwrap_or(key);
                if looks_secret(key) {
                    push(
                        "SecretsUsedInArgOrEnv",
                        format!(
                            "Do not use ARG or ENV instructions for sensitive data ({} {key:?})",
                            node.keyword.to_uppercase()
                        ),
                        node.args_span,
                    );
                }
            }
        }
    }
    stage.flush(&mut push);
    out.sort_by_key(|f| f.span.start);
    out
}

/// The sources of a COPY/ADD that name files of the build context (not
/// another stage, a URL, a heredoc or an unexpanded variable), cleaned to
/// context-relative form.
fn context_sources(node: &Node) -> Vec<String> {
    if node.flags.iter().any(|f| f.text.starts_with("--from=")) || node.args.len() < 2 {
        return Vec::new();
    }
    let sources = &node.args[..node.args.len() - 1];
    sources
        .iter()
        .filter(|s| {
            !s.contains('$')
                && !s.starts_with("<<")
                && super::instructions::source_kind(s) == super::instructions::SourceKind::Local
        })
        .map(|s| {
            s.trim_start_matches("./")
                .trim_start_matches('/')
                .to_string()
        })
        .filter(|s| !s.is_empty() && s != ".")
        .collect()
}

#[derive(Default)]
struct StageState {
    absolute_workdir: bool,
    /// A SHELL is in force (set in the stage or a stage it is FROM):
    /// BuildKit recommends JSON arguments only when the shell is the
    /// default one.
    shell: bool,
    repeated: Vec<(String, Span)>,
}

impl StageState {
    /// Reports CMD, ENTRYPOINT and HEALTHCHECK given more than once in the stage.
    fn flush(&self, push: &mut impl FnMut(&'static str, String, Span)) {
        for kind in ["CMD", "ENTRYPOINT", "HEALTHCHECK"] {
            let all: Vec<&Span> = self
                .repeated
                .iter()
                .filter(|(k, _)| k == kind)
                .map(|(_, s)| s)
                .collect();
            if let Some((_, earlier)) = all.split_last() {
                for span in earlier {
                    push(
                        "MultipleInstructionsDisallowed",
                        format!(
                            "Multiple {kind} instructions should not be used in the same stage because only the last one will be used"
                        ),
                        **span,
                    );
                }
            }
        }
    }
}

fn lint_from(
    node: &Node,
    global_args: &BTreeSet<String>,
    push: &mut impl FnMut(&'static str, String, Span),
) {
    if let [_, as_kw, name] = node.args.as_slice() {
        let from_upper = is_upper(&node.keyword);
        let as_upper = is_upper(as_kw);
        if from_upper != as_upper {
            push(
                "FromAsCasing",
                "'as' and 'FROM' keywords' casing do not match".into(),
                node.args_span,
            );
        }
        if name != &name.to_lowercase() {
            push(
                "StageNameCasing",
                format!("Stage name '{name}' should be lowercase"),
                node.args_span,
            );
        }
        if ["scratch", "context"].contains(&name.to_lowercase().as_str()) {
            push(
                "ReservedStageName",
                format!(
                    "'{}' is reserved and should not be used as a stage name",
                    name.to_lowercase()
                ),
                node.args_span,
            );
        }
    }
    let lexer = Lexer::new('\\');
    let declared =
        |name: &str| (global_args.contains(name) || AUTOMATIC_ARGS.contains(&name)).then_some("");
    let platform = node
        .flags
        .iter()
        .find_map(|f| f.text.strip_prefix("--platform="));
    let words = node
        .args
        .first()
        .map(String::as_str)
        .into_iter()
        .chain(platform);
    for word in words {
        if let Ok(expansion) = lexer.process_word(word, &declared) {
            for name in expansion.unset {
                push(
                    "UndefinedArgInFrom",
                    format!("FROM argument '{name}' is not declared"),
                    node.args_span,
                );
            }
        }
    }
    let flag = node
        .flags
        .iter()
        .find(|f| f.text.starts_with("--platform="))
        .map_or(node.span, |f| f.span);
    if let Some(p) = platform.filter(|p| ["$TARGETPLATFORM", "${TARGETPLATFORM}"].contains(p)) {
        push(
            "RedundantTargetPlatform",
            format!(
                "Setting platform to predefined {p} in FROM is redundant as this is the default behavior"
            ),
            flag,
        );
    }
    if let Some(p) = platform.filter(|p| !p.contains('$')) {
        push(
            "FromPlatformFlagConstDisallowed",
            format!("FROM --platform flag should not use constant value {p:?}"),
            flag,
        );
    }
}

/// InvalidDefaultArgInFrom: a FROM whose image, with the global ARGs'
/// defaults alone (no --build-arg), is empty or no valid reference: a
/// build that forgets the argument fails, and the check says why first.
fn lint_default_base(
    node: &Node,
    defaults: &std::collections::BTreeMap<String, String>,
    push: &mut impl FnMut(&'static str, String, Span),
) {
    let Some(base) = node.args.first().filter(|b| b.contains('$')) else {
        return;
    };
    // The platform args have values only at build time.
    if AUTOMATIC_ARGS.iter().any(|a| base.contains(a)) {
        return;
    }
    let lexer = Lexer::new('\\');
    let Ok(expanded) = lexer.process_word(base, &|name| defaults.get(name).map(String::as_str))
    else {
        return;
    };
    if expanded.value.is_empty() || crate::registry::Reference::parse(&expanded.value).is_err() {
        push(
            "InvalidDefaultArgInFrom",
            format!("Default value for ARG {base} results in empty or invalid base image name"),
            node.args_span,
        );
    }
}

/// True when `word` has no lower-case letter (`RUN`, `AS`).
fn is_upper(word: &str) -> bool {
    !word.chars().any(char::is_lowercase)
}

/// BuildKit's secret-name pattern: a name part such as `password` or `token`.
fn looks_secret(name: &str) -> bool {
    const WORDS: [&str; 9] = [
        "apikey",
        "auth",
        "credential",
        "credentials",
        "key",
        "password",
        "pass",
        "secret",
        "token",
    ];
    name.to_ascii_lowercase()
        .split('_')
        .any(|part| WORDS.contains(&part))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::{Source, parse};

    fn rules(text: &str) -> Vec<(&'static str, String)> {
        let ast = parse(&Source::new("Dockerfile", text.as_bytes())).unwrap();
        let ignored = |p: &str| p == "ignored";
        lint_with_context(&ast, Some(&ignored))
            .into_iter()
            .map(|f| (f.rule, f.message))
            .collect()
    }

    #[test]
    fn each_rule_fires() {
        let found = rules(concat!(
            "ARG BASE=a\n",
            "FROM --platform=linux/amd64 $BASE as Builder\n",
            "MAINTAINER me\n",
            "ENV PATH /x\n",
            "ARG GITHUB_TOKEN\n",
            "WORKDIR app\n",
            "CMD echo a\n",
            "CMD [\"b\"]\n",
            "run x \\\n\n y\n",
            "FROM $NOPE AS scratch\n",
            "COPY ignored /x\n",
            "FROM a AS builder\n",
            "FROM --platform=$TARGETPLATFORM a\n",
            "EXPOSE 80/TCP 127.0.0.1:80:80\n",
            "FROM busybox:$NODEF\n",
        ));
        let names: Vec<&str> = found.iter().map(|(r, _)| *r).collect();
        for rule in RULES {
            assert!(
                names.contains(&rule.name),
                "{} did not fire: {found:#?}",
                rule.name
            );
        }
    }

    /// BuildKit recommends JSON arguments only under the default shell: a
    /// SHELL in the stage, or in a stage it is FROM, silences it.
    #[test]
    fn json_args_are_recommended_only_under_the_default_shell() {
        let count = |text: &str| {
            rules(text)
                .iter()
                .filter(|(r, _)| *r == "JSONArgsRecommended")
                .count()
        };
        assert_eq!(count("FROM a\nCMD echo a\n"), 1);
        assert_eq!(
            count("FROM a\nSHELL [\"/bin/bash\", \"-c\"]\nCMD echo a\n"),
            0
        );
        assert_eq!(
            count("FROM a AS base\nSHELL [\"/bin/bash\", \"-c\"]\nFROM base\nENTRYPOINT echo a\n"),
            0
        );
        assert_eq!(
            count("FROM a AS base\nSHELL [\"/bin/bash\", \"-c\"]\nFROM other\nCMD echo a\n"),
            1
        );
    }

    /// BuildKit's testInvalidDefaultArgInFrom, its four Dockerfiles.
    #[test]
    fn invalid_default_args_in_from() {
        let found = |text: &str| -> Vec<String> {
            rules(text)
                .into_iter()
                .filter(|(r, _)| *r == "InvalidDefaultArgInFrom")
                .map(|(_, m)| m)
                .collect()
        };
        assert_eq!(
            found("ARG VERSION\nFROM busybox:$VERSION\n"),
            ["Default value for ARG busybox:$VERSION results in empty or invalid base image name"]
        );
        assert_eq!(
            found("ARG IMAGE\nFROM $IMAGE\n"),
            ["Default value for ARG $IMAGE results in empty or invalid base image name"]
        );
        assert_eq!(
            found("ARG SFX=\"box:\"\nFROM busy${SFX}\n"),
            ["Default value for ARG busy${SFX} results in empty or invalid base image name"]
        );
        assert!(found("ARG VERSION=\"latest\"\nFROM busybox:${VERSION}\n").is_empty());
        assert!(found("ARG V=latest\nARG TAG=$V\nFROM busybox:$TAG\n").is_empty());
        assert!(found("FROM --platform=$BUILDPLATFORM a:$TARGETARCH\n").is_empty());
    }

    /// BuildKit's messages, and nothing for what is fine.
    #[test]
    fn expose_and_target_platform_rules() {
        let found = rules(
            "FROM --platform=${TARGETPLATFORM} a\nEXPOSE 80/TcP 80:80 53/udp 8080 ${P}/TCP\nFROM --platform=$BUILDPLATFORM b\n",
        );
        let messages: Vec<&str> = found.iter().map(|(_, m)| m.as_str()).collect();
        assert_eq!(
            messages,
            [
                "Setting platform to predefined ${TARGETPLATFORM} in FROM is redundant as this is the default behavior",
                "Defined protocol '80/TcP' in EXPOSE instruction should be lowercase",
                "EXPOSE instruction should not define an IP address or host-port mapping, found '80:80'",
            ]
        );
    }

    #[test]
    fn copy_ignored_file_needs_the_context() {
        let text =
            "FROM a\nCOPY ./secret.env app/ /dst/\nCOPY --from=b secret.env /x\nADD ${V} /y\n";
        let ast = parse(&Source::new("Dockerfile", text.as_bytes())).unwrap();
        assert!(lint(&ast).is_empty());
        let ignored = |p: &str| p == "secret.env";
        let found: Vec<String> = lint_with_context(&ast, Some(&ignored))
            .into_iter()
            .map(|f| f.message)
            .collect();
        assert_eq!(
            found,
            ["Attempting to Copy file \"secret.env\" that is excluded by .dockerignore"]
        );
    }

    #[test]
    fn messages() {
        let found = rules("FROM a AS Build\nMAINTAINER x\nENV A b\n");
        assert_eq!(
            found,
            [
                (
                    "StageNameCasing",
                    "Stage name 'Build' should be lowercase".to_string()
                ),
                (
                    "MaintainerDeprecated",
                    "Maintainer instruction is deprecated in favor of using label".into()
                ),
                (
                    "LegacyKeyValueFormat",
                    "\"ENV key=value\" should be used instead of legacy \"ENV key value\" format"
                        .into()
                ),
            ]
        );
    }

    #[test]
    fn clean_file_has_no_findings() {
        assert!(
            rules("ARG V=1\nFROM a:$V AS build\nWORKDIR /app\nENV A=b\nCMD [\"x\"]\n").is_empty()
        );
    }

    #[test]
    fn check_directive_skips_and_promotes() {
        assert!(rules("# check=skip=MaintainerDeprecated\nFROM a\nMAINTAINER x\n").is_empty());
        assert!(rules("# check=skip=all\nFROM a\nMAINTAINER x\nCMD y\n").is_empty());
        let c = Config::from_directive("skip=A, B;error=true");
        assert!(c.error && c.skip.contains("A") && c.skip.contains("B"));
    }
}
