//! Lint rules: things a Dockerfile may do but should not, as BuildKit's
//! linter reports them (`docker build --check`, and warnings after a
//! build). Rules are data ([`RULES`], with BuildKit's names, descriptions
//! and URLs); the `# check=` directive (or the `BUILDKIT_DOCKERFILE_CHECK`
//! build arg, which replaces it) skips rules, turns experimental ones on
//! and makes findings errors; a `# check=` comment right above an
//! instruction adds to it for that instruction.
//!
//! As in BuildKit, some rules are about the file as written (casing,
//! stage names, FROM) and hold for every stage; the others are found
//! while a stage is dispatched, so a build reports them only for the
//! stages it builds ([`Inputs::stages`]), and `--check` for all.

use super::shell::Lexer;
use super::source::Span;
use super::syntax::{Ast, Node};
use std::collections::{BTreeMap, BTreeSet};

/// A lint rule: its BuildKit name, description and documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    /// The rule's name, as `# check=skip=` names it.
    pub name: &'static str,
    /// BuildKit's one line on why it matters.
    pub description: &'static str,
    /// BuildKit's page about it (empty for a rule without one).
    pub url: &'static str,
    /// Reported only when `# check=experimental=` names it (or `all`).
    pub experimental: bool,
}

const fn rule(name: &'static str, description: &'static str, url: &'static str) -> Rule {
    Rule {
        name,
        description,
        url,
        experimental: false,
    }
}

/// Every rule of BuildKit's linter (frontend/dockerfile/linter/ruleset.go).
pub const RULES: [Rule; 22] = [
    rule(
        "StageNameCasing",
        "Stage names should be lowercase",
        "https://docs.docker.com/go/dockerfile/rule/stage-name-casing/",
    ),
    rule(
        "FromAsCasing",
        "The 'as' keyword should match the case of the 'from' keyword",
        "https://docs.docker.com/go/dockerfile/rule/from-as-casing/",
    ),
    rule(
        "NoEmptyContinuation",
        "Empty continuation lines will become errors in a future release",
        "https://docs.docker.com/go/dockerfile/rule/no-empty-continuation/",
    ),
    rule(
        "ConsistentInstructionCasing",
        "All commands within the Dockerfile should use the same casing (either upper or lower)",
        "https://docs.docker.com/go/dockerfile/rule/consistent-instruction-casing/",
    ),
    rule(
        "DuplicateStageName",
        "Stage names should be unique",
        "https://docs.docker.com/go/dockerfile/rule/duplicate-stage-name/",
    ),
    rule(
        "ReservedStageName",
        "Reserved words should not be used as stage names",
        "https://docs.docker.com/go/dockerfile/rule/reserved-stage-name/",
    ),
    rule(
        "JSONArgsRecommended",
        "JSON arguments recommended for ENTRYPOINT/CMD to prevent unintended behavior related to OS signals",
        "https://docs.docker.com/go/dockerfile/rule/json-args-recommended/",
    ),
    rule(
        "MaintainerDeprecated",
        "The MAINTAINER instruction is deprecated, use a label instead to define an image author",
        "https://docs.docker.com/go/dockerfile/rule/maintainer-deprecated/",
    ),
    rule(
        "UndefinedArgInFrom",
        "FROM command must use declared ARGs",
        "https://docs.docker.com/go/dockerfile/rule/undefined-arg-in-from/",
    ),
    rule(
        "WorkdirRelativePath",
        "Relative workdir without an absolute workdir declared within the build can have unexpected results if the base image changes",
        "https://docs.docker.com/go/dockerfile/rule/workdir-relative-path/",
    ),
    rule(
        "UndefinedVar",
        "Variables should be defined before their use",
        "https://docs.docker.com/go/dockerfile/rule/undefined-var/",
    ),
    rule(
        "MultipleInstructionsDisallowed",
        "Multiple instructions of the same type should not be used in the same stage",
        "https://docs.docker.com/go/dockerfile/rule/multiple-instructions-disallowed/",
    ),
    rule(
        "LegacyKeyValueFormat",
        "Legacy key/value format with whitespace separator should not be used",
        "https://docs.docker.com/go/dockerfile/rule/legacy-key-value-format/",
    ),
    rule(
        "InvalidBaseImagePlatform",
        "Base image platform does not match expected target platform",
        "",
    ),
    rule(
        "RedundantTargetPlatform",
        "Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior",
        "https://docs.docker.com/go/dockerfile/rule/redundant-target-platform/",
    ),
    rule(
        "SecretsUsedInArgOrEnv",
        "Sensitive data should not be used in the ARG or ENV commands",
        "https://docs.docker.com/go/dockerfile/rule/secrets-used-in-arg-or-env/",
    ),
    rule(
        "InvalidDefaultArgInFrom",
        "Default value for global ARG results in an empty or invalid base image name",
        "https://docs.docker.com/go/dockerfile/rule/invalid-default-arg-in-from/",
    ),
    rule(
        "FromPlatformFlagConstDisallowed",
        "FROM --platform flag should not use a constant value",
        "https://docs.docker.com/go/dockerfile/rule/from-platform-flag-const-disallowed/",
    ),
    rule(
        "CopyIgnoredFile",
        "Attempting to Copy file that is excluded by .dockerignore",
        "https://docs.docker.com/go/dockerfile/rule/copy-ignored-file/",
    ),
    Rule {
        name: "InvalidDefinitionDescription",
        description: "Comment for build stage or argument should follow the format: `# <arg/stage name> <description>`. If this is not intended to be a description comment, add an empty line or comment between the instruction and the comment.",
        url: "https://docs.docker.com/go/dockerfile/rule/invalid-definition-description/",
        experimental: true,
    },
    rule(
        "ExposeProtoCasing",
        "Protocol in EXPOSE instruction should be lowercase",
        "https://docs.docker.com/go/dockerfile/rule/expose-proto-casing/",
    ),
    rule(
        "ExposeInvalidFormat",
        "IP address and host-port mapping should not be used in EXPOSE instruction. This will become an error in a future release",
        "https://docs.docker.com/go/dockerfile/rule/expose-invalid-format/",
    ),
];

/// The rule named `name`.
pub fn rule_named(name: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.name == name)
}

/// One finding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The rule's name.
    pub rule: &'static str,
    /// What is wrong here (BuildKit's detail text).
    pub message: String,
    /// The instruction it is about.
    pub span: Span,
    /// Its first line, 1-based (BuildKit's location).
    pub line: usize,
    /// Its last line.
    pub end_line: usize,
}

impl Finding {
    /// The rule's entry in [`RULES`].
    pub fn rule(&self) -> &'static Rule {
        rule_named(self.rule).unwrap_or(&RULES[0])
    }

    /// BuildKit's one-line form: `Rule: detail (line N)`.
    pub fn short(&self) -> String {
        format!("{}: {} (line {})", self.rule, self.message, self.line)
    }
}

/// What the `# check=` directive (or `BUILDKIT_DOCKERFILE_CHECK`) asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Rules not to report.
    pub skip: BTreeSet<String>,
    /// `skip=all`.
    pub skip_all: bool,
    /// Experimental rules to report.
    pub experimental: BTreeSet<String>,
    /// `experimental=all`.
    pub experimental_all: bool,
    /// `error=true`: findings fail the build.
    pub error: bool,
}

impl Config {
    /// Reads `skip=A,B;experimental=C;error=true` as BuildKit's
    /// ParseLintOptions does: an unknown key or a bad boolean is an error.
    pub fn parse(value: &str) -> Result<Config, String> {
        let mut config = Config::default();
        let value = value.trim();
        if value.is_empty() {
            return Ok(config);
        }
        let list =
            |v: &str| -> BTreeSet<String> { v.split(',').map(|r| r.trim().to_string()).collect() };
        for part in value.splitn(3, ';') {
            let Some((key, val)) = part.split_once('=') else {
                return Err(format!("invalid check option {:?}", part));
            };
            let val = val.trim();
            match key.trim() {
                "skip" if val == "all" => config.skip_all = true,
                "skip" => config.skip = list(val),
                "experimental" if val == "all" => config.experimental_all = true,
                "experimental" => config.experimental = list(val),
                "error" => {
                    config.error = parse_go_bool(val).ok_or_else(|| {
                        format!(
                            "failed to parse check option {part:?}: strconv.ParseBool: parsing {val:?}: invalid syntax"
                        )
                    })?;
                }
                other => return Err(format!("invalid check option {other:?}")),
            }
        }
        Ok(config)
    }

    /// The file's configuration: `build_arg` (BUILDKIT_DOCKERFILE_CHECK)
    /// when given, else the `# check=` directive.
    pub fn for_file(ast: &Ast, build_arg: Option<&str>) -> Result<Config, String> {
        let text = match build_arg {
            Some(v) => v.to_string(),
            None => ast
                .directives
                .iter()
                .find(|d| d.name == "check")
                .map(|d| d.value.split(' ').next().unwrap_or("").to_string())
                .unwrap_or_default(),
        };
        Config::parse(&text).map_err(|e| match build_arg {
            Some(_) => format!("failed to parse BUILDKIT_DOCKERFILE_CHECK: {e}"),
            None => format!("failed to parse check options: {e}"),
        })
    }

    /// The configuration a file's directive gives (a bad one: the default).
    pub fn of(ast: &Ast) -> Config {
        Config::for_file(ast, None).unwrap_or_default()
    }

    /// This configuration with a `# check=` comment above an instruction
    /// added to it (BuildKit's WithMergedConfigFromComments).
    fn with_comments(&self, comments: &[String]) -> Config {
        for comment in comments {
            let Some((name, value)) = comment.split_once('=') else {
                continue;
            };
            if !name.trim().eq_ignore_ascii_case("check") {
                continue;
            }
            let Ok(other) = Config::parse(value.split(' ').next().unwrap_or("")) else {
                return self.clone();
            };
            let mut merged = self.clone();
            merged.skip_all |= other.skip_all;
            merged.skip.extend(other.skip);
            merged.experimental_all |= other.experimental_all;
            merged.experimental.extend(other.experimental);
            return merged;
        }
        self.clone()
    }

    /// True when findings of `rule` are reported.
    pub fn wants(&self, rule: &str) -> bool {
        match rule_named(rule) {
            Some(r) if r.experimental => self.experimental_all || self.experimental.contains(rule),
            _ => !self.skip_all && !self.skip.contains(rule),
        }
    }
}

/// Go's strconv.ParseBool.
fn parse_go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// What a FROM image brings that the rules look at.
#[derive(Clone, Debug, Default)]
pub struct BaseFacts {
    /// The names its config's Env sets.
    pub env: Vec<String>,
    /// Its config sets a SHELL.
    pub shell: bool,
    /// Its platform (`linux/arm64`), when it is not the one built for.
    pub other_platform: Option<String>,
    /// The platform the stage builds for.
    pub platform: String,
}

/// The facts of a FROM image by reference.
pub type BaseLookup<'a> = dyn Fn(&str) -> Option<BaseFacts> + 'a;

/// What the rules see besides the Dockerfile.
#[derive(Default)]
pub struct Inputs<'a> {
    /// Whether a context path is excluded by `.dockerignore`, as BuildKit
    /// decides it for CopyIgnoredFile (None: no .dockerignore, or one
    /// with exclusions, which BuildKit does not judge).
    pub ignored: Option<&'a dyn Fn(&str) -> bool>,
    /// The facts of a FROM image by reference (None: not known, and
    /// UndefinedVar is not judged in that stage).
    pub base: Option<&'a BaseLookup<'a>>,
    /// `--build-arg` values.
    pub build_args: &'a [(String, String)],
    /// The stages a build reaches (None: every stage, as `--check`).
    pub stages: Option<&'a [usize]>,
    /// The configuration (None: the file's own).
    pub config: Option<Config>,
}

/// Runs every rule over `ast` with nothing but the file (every stage, the
/// file's own configuration, no image known); findings in source order.
pub fn lint(ast: &Ast) -> Vec<Finding> {
    lint_with(ast, &Inputs::default())
}

/// Runs every rule over `ast` with what `inputs` say; findings sorted by
/// line, then message (BuildKit's order).
pub fn lint_with(ast: &Ast, inputs: &Inputs) -> Vec<Finding> {
    let config = inputs.config.clone().unwrap_or_else(|| Config::of(ast));
    let mut run = Linter {
        out: Vec::new(),
        escape: ast.escape,
    };
    for warning in &ast.warnings {
        // BuildKit places it on the instruction's last line.
        let node = ast
            .nodes
            .iter()
            .find(|n| n.span.start <= warning.span.start && warning.span.start <= n.span.end);
        if let Some(node) = node {
            let at = Finding {
                rule: "",
                message: String::new(),
                span: node.span,
                line: node.end_line,
                end_line: node.end_line,
            };
            run.push_at(
                &config,
                "NoEmptyContinuation",
                "Empty continuation line".into(),
                &at,
            );
        }
    }
    let first_from = ast
        .nodes
        .iter()
        .position(|n| n.name == "from")
        .unwrap_or(ast.nodes.len());
    let (globals, staged) = ast.nodes.split_at(first_from);
    run.casing(&config, staged);

    // The global ARGs: with the build args (what FROM expands with), and
    // with their defaults alone (what InvalidDefaultArgInFrom judges).
    let lexer = Lexer::new(ast.escape);
    let mut global: BTreeMap<String, String> = automatic_args();
    let mut declared: BTreeSet<String> = BTreeSet::new();
    let mut defaults: BTreeMap<String, String> = automatic_args();
    for node in globals.iter().filter(|n| n.name == "arg") {
        let config = config.with_comments(&node.comments);
        run.definition_description(&config, node, "ARG", arg_names(node));
        for a in &node.args {
            let (name, default) = match a.split_once('=') {
                Some((n, d)) => (n, Some(d)),
                None => (a.as_str(), None),
            };
            declared.insert(name.to_string());
            if let Some(d) = default {
                let v = expand(&lexer, d, &defaults);
                defaults.insert(name.to_string(), v);
            }
            let given = inputs
                .build_args
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone());
            match (given, default) {
                (Some(v), _) => {
                    global.insert(name.to_string(), v);
                }
                (None, Some(d)) => {
                    let v = expand(&lexer, d, &global);
                    global.insert(name.to_string(), v);
                }
                (None, None) => {}
            }
        }
    }

    // The stages.
    let mut names: Vec<Option<String>> = Vec::new();
    let mut ends: Vec<StageEnd> = Vec::new();
    let mut seen_names: BTreeSet<String> = BTreeSet::new();
    let mut index = 0usize;
    let mut i = 0usize;
    while i < staged.len() {
        let from = &staged[i];
        let end = staged[i + 1..]
            .iter()
            .position(|n| n.name == "from")
            .map_or(staged.len(), |p| i + 1 + p);
        let body = &staged[i + 1..end];
        let config_here = config.with_comments(&from.comments);
        let name = match from.args.as_slice() {
            [_, _, name] => Some(name.to_lowercase()),
            _ => None,
        };
        run.rules_of_from(&config_here, from, &global, &declared, &defaults);
        if let Some(n) = &name {
            run.definition_description(&config_here, from, "FROM", vec![n.clone()]);
            if ["scratch", "context"].contains(&n.as_str()) {
                run.push(
                    &config_here,
                    "ReservedStageName",
                    format!("Stage name should not use the same name as reserved stage {n:?}"),
                    from,
                );
            }
            if !seen_names.insert(n.clone()) {
                run.push(
                    &config_here,
                    "DuplicateStageName",
                    format!("Duplicate stage name {n:?}, stage names should be unique"),
                    from,
                );
            }
        }
        // Rules of the file as written hold in every stage.
        for node in body {
            let config = config.with_comments(&node.comments);
            match node.name.as_str() {
                "maintainer" => run.push(
                    &config,
                    "MaintainerDeprecated",
                    "Maintainer instruction is deprecated in favor of using label".into(),
                    node,
                ),
                "arg" => run.definition_description(&config, node, "ARG", arg_names(node)),
                _ => {}
            }
        }
        // The stage it starts from, as it was dispatched.
        let base_raw = from.args.first().map(String::as_str).unwrap_or("");
        let base = expand(&lexer, base_raw, &global);
        // The nearest earlier stage of that name (FROM takes no index).
        let parent = names
            .iter()
            .rposition(|n| n.as_deref() == Some(base.to_lowercase().as_str()));
        // A build looks at the images of the stages it builds only.
        let reached = inputs.stages.is_none_or(|s| s.contains(&index));
        let mut state = match parent {
            Some(p) => ends[p].inherited(),
            None if base.eq_ignore_ascii_case("scratch") => StageEnd::from_env(&["PATH"], false),
            None if !reached => StageEnd::unknown(),
            None => match inputs.base.and_then(|f| f(&base)) {
                Some(facts) => {
                    if let Some(actual) = &facts.other_platform {
                        {
                            run.push(
                                &config_here,
                                "InvalidBaseImagePlatform",
                                format!(
                                    "Base image {base} was pulled with platform {actual:?}, expected {:?} for current build",
                                    facts.platform
                                ),
                                from,
                            );
                        }
                    }
                    let env: Vec<&str> = facts.env.iter().map(String::as_str).collect();
                    StageEnd::from_env(&env, facts.shell)
                }
                None => StageEnd::unknown(),
            },
        };
        if reached {
            run.dispatch(&config, body, &mut state, &global, inputs);
        }
        names.push(name);
        ends.push(state);
        index += 1;
        i = end;
    }
    run.out
        .sort_by(|a, b| (a.line, &a.message).cmp(&(b.line, &b.message)));
    run.out
}

/// The names an ARG line declares.
fn arg_names(node: &Node) -> Vec<String> {
    node.args
        .iter()
        .map(|a| a.split('=').next().unwrap_or(a).to_string())
        .collect()
}

/// The platform built for (`linux/amd64`).
fn host_platform() -> String {
    format!("linux/{}", crate::image::config::host_architecture())
}

/// BuildKit's automatic ARGs, for this machine's platform.
fn automatic_args() -> BTreeMap<String, String> {
    let arch = crate::image::config::host_architecture();
    let platform = host_platform();
    let mut out = BTreeMap::new();
    for prefix in ["BUILD", "TARGET"] {
        out.insert(format!("{prefix}PLATFORM"), platform.clone());
        out.insert(format!("{prefix}OS"), "linux".to_string());
        out.insert(format!("{prefix}ARCH"), arch.to_string());
        out.insert(format!("{prefix}VARIANT"), String::new());
    }
    out
}

/// `word` expanded with `vars` (what does not expand stays empty).
fn expand(lexer: &Lexer, word: &str, vars: &BTreeMap<String, String>) -> String {
    lexer
        .process_word(word, &|n| vars.get(n).map(String::as_str))
        .map(|e| e.value)
        .unwrap_or_default()
}

/// A stage as dispatch leaves it: what the next stage FROM it inherits.
#[derive(Clone, Debug)]
struct StageEnd {
    /// Variables set (image ENV, ENV, ARGs with a value), with values;
    /// None when the base image's are not known.
    env: Option<BTreeMap<String, String>>,
    /// ARGs declared (with a value or not): never "undefined".
    args: BTreeSet<String>,
    shell: bool,
    workdir_set: bool,
}

impl StageEnd {
    fn from_env(names: &[&str], shell: bool) -> StageEnd {
        StageEnd {
            env: Some(
                names
                    .iter()
                    .map(|n| (n.to_string(), String::new()))
                    .collect(),
            ),
            args: BTreeSet::new(),
            shell,
            workdir_set: false,
        }
    }

    fn unknown() -> StageEnd {
        StageEnd {
            env: None,
            args: BTreeSet::new(),
            shell: false,
            workdir_set: false,
        }
    }

    fn inherited(&self) -> StageEnd {
        self.clone()
    }

    fn set(&mut self, name: &str, value: String) {
        if let Some(env) = &mut self.env {
            env.insert(name.to_string(), value);
        }
    }
}

struct Linter {
    out: Vec<Finding>,
    escape: char,
}

impl Linter {
    fn push(&mut self, config: &Config, rule: &'static str, message: String, node: &Node) {
        if config.wants(rule) {
            self.out.push(Finding {
                rule,
                message,
                span: node.span,
                line: node.start_line,
                end_line: node.end_line,
            });
        }
    }

    fn push_at(&mut self, config: &Config, rule: &'static str, message: String, at: &Finding) {
        if config.wants(rule) {
            self.out.push(Finding {
                rule,
                message,
                ..at.clone()
            });
        }
    }

    /// ConsistentInstructionCasing: BuildKit counts the instructions of the
    /// stages (not the global ARGs) whose keyword is all one case; a tie
    /// is upper case.
    fn casing(&mut self, config: &Config, staged: &[Node]) {
        let consistent = |k: &str| k == k.to_lowercase() || k == k.to_uppercase();
        let (mut lower, mut upper) = (0, 0);
        for node in staged.iter().filter(|n| consistent(&n.keyword)) {
            if node.keyword == node.keyword.to_lowercase() {
                lower += 1;
            } else {
                upper += 1;
            }
        }
        let majority_lower = lower > upper;
        for node in staged {
            let config = config.with_comments(&node.comments);
            let k = &node.keyword;
            let want = match majority_lower {
                true if *k != k.to_lowercase() => "lowercase",
                false if *k != k.to_uppercase() => "uppercase",
                _ => continue,
            };
            self.push(
                &config,
                "ConsistentInstructionCasing",
                format!("Command '{k}' should match the case of the command majority ({want})"),
                node,
            );
        }
    }

    /// InvalidDefinitionDescription (experimental): a comment right above
    /// a stage or an ARG must start with its name.
    fn definition_description(
        &mut self,
        config: &Config,
        node: &Node,
        instruction: &str,
        keys: Vec<String>,
    ) {
        let (Some(last), Some(first)) = (node.comments.last(), keys.first()) else {
            return;
        };
        let word = last.split(' ').next().unwrap_or("");
        if keys.iter().any(|k| k == word) {
            return;
        }
        let example = if keys.len() > 1 { "<arg_key>" } else { first };
        self.push(
            config,
            "InvalidDefinitionDescription",
            format!(
                "Comment for {instruction} should follow the format: `# {example} <description>`"
            ),
            node,
        );
    }

    /// The rules of a FROM line.
    fn rules_of_from(
        &mut self,
        config: &Config,
        node: &Node,
        global: &BTreeMap<String, String>,
        declared: &BTreeSet<String>,
        defaults: &BTreeMap<String, String>,
    ) {
        let from_kw = &node.keyword;
        if let [_, as_kw, name] = node.args.as_slice() {
            if *name != name.to_lowercase() {
                self.push(
                    config,
                    "StageNameCasing",
                    format!("Stage name '{name}' should be lowercase"),
                    node,
                );
            }
            let from_lower = *from_kw == from_kw.to_lowercase();
            let from_upper = *from_kw == from_kw.to_uppercase();
            let mismatch = (from_lower && *as_kw != as_kw.to_lowercase())
                || (!from_lower && from_upper && *as_kw != as_kw.to_uppercase());
            if mismatch {
                self.push(
                    config,
                    "FromAsCasing",
                    format!("'{as_kw}' and '{from_kw}' keywords' casing do not match"),
                    node,
                );
            }
        }
        let lexer = Lexer::new(self.escape);
        let known: Vec<&str> = declared
            .iter()
            .map(String::as_str)
            .chain(global.keys().map(String::as_str))
            .collect();
        let platform = node
            .flags
            .iter()
            .find_map(|f| f.text.strip_prefix("--platform="));
        let base = node.args.first().map(String::as_str).unwrap_or("");
        for word in std::iter::once(base).chain(platform) {
            let Ok(expansion) = lexer.process_word(word, &|n| global.get(n).map(String::as_str))
            else {
                continue;
            };
            for name in expansion.unset.iter().filter(|n| !declared.contains(*n)) {
                let message = match search(name, &known) {
                    Some(s) => {
                        format!("FROM argument '{name}' is not declared (did you mean {s}?)")
                    }
                    None => format!("FROM argument '{name}' is not declared"),
                };
                self.push(config, "UndefinedArgInFrom", message, node);
            }
        }
        if let Some(p) = platform {
            let expansion = lexer
                .process_word(p, &|n| global.get(n).map(String::as_str))
                .ok();
            let vars = expansion
                .as_ref()
                .map_or(0, |e| e.used.len() + e.unset.len());
            if let Some(e) = &expansion
                && e.used.len() == 1
                && e.unset.is_empty()
                && e.used.contains("TARGETPLATFORM")
                && global.get("TARGETPLATFORM") == Some(&e.value)
            {
                self.push(
                    config,
                    "RedundantTargetPlatform",
                    format!(
                        "Setting platform to predefined {p} in FROM is redundant as this is the default behavior"
                    ),
                    node,
                );
            }
            if vars == 0 {
                let value = expansion.map(|e| e.value).unwrap_or_else(|| p.to_string());
                let mut parts = value.split('/');
                let (os, arch) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                let stage = node.args.get(2).map(String::as_str).unwrap_or("");
                if !os.is_empty()
                    && !arch.is_empty()
                    && !stage.contains(os)
                    && !stage.contains(arch)
                {
                    self.push(
                        config,
                        "FromPlatformFlagConstDisallowed",
                        format!("FROM --platform flag should not use constant value {value:?}"),
                        node,
                    );
                }
            }
        }
        // InvalidDefaultArgInFrom: the image with the defaults alone.
        if base.contains('$') {
            let with_defaults = expand(&lexer, base, defaults);
            if with_defaults.is_empty()
                || crate::registry::Reference::parse(&with_defaults).is_err()
            {
                self.push(
                    config,
                    "InvalidDefaultArgInFrom",
                    format!(
                        "Default value for ARG {base} results in empty or invalid base image name"
                    ),
                    node,
                );
            }
        }
    }

    /// The rules BuildKit applies while it dispatches a stage's
    /// instructions, with the stage's variables as they are at each one.
    fn dispatch(
        &mut self,
        config: &Config,
        body: &[Node],
        state: &mut StageEnd,
        global: &BTreeMap<String, String>,
        inputs: &Inputs,
    ) {
        let lexer = Lexer::new(self.escape);
        let mut used_once: [Option<Node>; 3] = [None, None, None];
        for node in body {
            let config = config.with_comments(&node.comments);
            let config = &config;
            let mut words: Vec<&str> = Vec::new();
            let flag = |name: &'static str| {
                node.flags
                    .iter()
                    .filter_map(move |f| f.text.strip_prefix(name))
                    .filter_map(|v| v.strip_prefix('='))
            };
            match node.name.as_str() {
                "env" | "label" => {
                    for kv in node.args.chunks(3) {
                        words.extend(kv.iter().take(2).map(String::as_str));
                    }
                }
                "copy" | "add" => {
                    words.extend(flag("--chown"));
                    words.extend(flag("--chmod"));
                    if node.name == "add" {
                        words.extend(flag("--checksum"));
                    }
                    words.extend(
                        node.args
                            .iter()
                            .filter(|a| !a.starts_with("<<"))
                            .map(String::as_str),
                    );
                }
                "workdir" | "user" | "stopsignal" => {
                    words.extend(node.args.first().map(String::as_str));
                }
                "volume" => words.extend(node.args.iter().map(String::as_str)),
                "run" => {
                    for m in flag("--mount") {
                        words.extend(
                            m.split(',')
                                .filter_map(|kv| kv.split_once('=').map(|p| p.1)),
                        );
                    }
                }
                _ => {}
            }
            self.undefined(config, node, &words, state, &lexer);
            if matches!(node.name.as_str(), "copy" | "add") {
                for h in node.heredocs.iter().filter(|h| h.expand) {
                    let lexer = Lexer {
                        skip_quotes: true,
                        ..lexer
                    };
                    self.undefined(config, node, &[h.content.as_str()], state, &lexer);
                }
            }
            let vars = state.env.clone().unwrap_or_default();
            match node.name.as_str() {
                "env" => {
                    for kv in node.args.chunks(3) {
                        let key = expand(&lexer, &kv[0], &vars);
                        if kv.get(2).is_some_and(String::is_empty) {
                            self.legacy(config, node);
                        }
                        self.secret(config, node, "ENV", &key);
                        let value = expand(&lexer, &kv[1], &vars);
                        state.set(&key, value);
                    }
                }
                "label" if node.args.len() == 3 && node.args[2].is_empty() => {
                    self.legacy(config, node);
                }
                "arg" => {
                    for a in &node.args {
                        let (name, default) = match a.split_once('=') {
                            Some((n, d)) => (n, Some(d)),
                            None => (a.as_str(), None),
                        };
                        self.secret(config, node, "ARG", name);
                        let given = inputs
                            .build_args
                            .iter()
                            .rev()
                            .find(|(k, _)| k == name)
                            .map(|(_, v)| v.clone());
                        let value = match (given, default) {
                            (Some(v), _) => Some(v),
                            (None, Some(d)) => {
                                self.undefined(config, node, &[d], state, &lexer);
                                let vars = state.env.clone().unwrap_or_default();
                                Some(expand(&lexer, d, &vars))
                            }
                            (None, None) => global.get(name).cloned(),
                        };
                        if let Some(v) = value {
                            state.set(name, v);
                        }
                        state.args.insert(name.to_string());
                    }
                }
                "workdir" => {
                    let path = node.args.first().map(|w| expand(&lexer, w, &vars));
                    if let Some(path) = path
                        && !state.workdir_set
                        && !path.starts_with('/')
                    {
                        self.push(
                            config,
                            "WorkdirRelativePath",
                            format!(
                                "Relative workdir {path:?} can have unexpected results if the base image changes"
                            ),
                            node,
                        );
                    }
                    state.workdir_set = true;
                }
                "shell" => state.shell = true,
                "cmd" | "entrypoint" | "healthcheck" => {
                    let slot = match node.name.as_str() {
                        "cmd" => 0,
                        "entrypoint" => 1,
                        _ => 2,
                    };
                    if let Some(earlier) = used_once[slot].replace(node.clone()) {
                        // Reported where the ignored one is.
                        self.push(
                            config,
                            "MultipleInstructionsDisallowed",
                            format!(
                                "Multiple {} instructions should not be used in the same stage because only the last one will be used",
                                node.keyword
                            ),
                            &earlier,
                        );
                    }
                    if slot < 2 && !node.json && !state.shell {
                        self.push(
                            config,
                            "JSONArgsRecommended",
                            format!(
                                "JSON arguments recommended for {} to prevent unintended behavior related to OS signals",
                                node.keyword
                            ),
                            node,
                        );
                    }
                }
                "copy" | "add" => self.ignored(config, node, &vars, &lexer, inputs),
                "expose" => {
                    for raw in &node.args {
                        let port = expand(&lexer, raw, &vars);
                        if let Some((_, proto)) = port.rsplit_once('/')
                            && proto != proto.to_lowercase()
                        {
                            self.push(
                                config,
                                "ExposeProtoCasing",
                                format!(
                                    "Defined protocol '{port}' in EXPOSE instruction should be lowercase"
                                ),
                                node,
                            );
                        }
                        if port.contains(':') {
                            self.push(
                                config,
                                "ExposeInvalidFormat",
                                format!(
                                    "EXPOSE instruction should not define an IP address or host-port mapping, found '{port}'"
                                ),
                                node,
                            );
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// UndefinedVar: names `words` use that nothing in the stage sets
    /// (skipped where the base image's variables are not known).
    fn undefined(
        &mut self,
        config: &Config,
        node: &Node,
        words: &[&str],
        state: &StageEnd,
        lexer: &Lexer,
    ) {
        let Some(env) = &state.env else { return };
        let mut unset: BTreeSet<String> = BTreeSet::new();
        for word in words {
            if let Ok(e) = lexer.process_word(word, &|n| env.get(n).map(String::as_str)) {
                unset.extend(e.unset);
            }
        }
        let keys: Vec<&str> = env.keys().map(String::as_str).collect();
        for name in unset.iter().filter(|n| !state.args.contains(*n)) {
            let message = match search(name, &keys) {
                Some(s) => format!("Usage of undefined variable '${name}' (did you mean ${s}?)"),
                None => format!("Usage of undefined variable '${name}'"),
            };
            self.push(config, "UndefinedVar", message, node);
        }
    }

    fn legacy(&mut self, config: &Config, node: &Node) {
        let kw = &node.keyword;
        self.push(
            config,
            "LegacyKeyValueFormat",
            format!(
                "\"{kw} key=value\" should be used instead of legacy \"{kw} key value\" format"
            ),
            node,
        );
    }

    fn secret(&mut self, config: &Config, node: &Node, instruction: &str, key: &str) {
        if looks_secret(key) {
            self.push(
                config,
                "SecretsUsedInArgOrEnv",
                format!(
                    "Do not use ARG or ENV instructions for sensitive data ({instruction} {key:?})"
                ),
                node,
            );
        }
    }

    /// CopyIgnoredFile: a context source the .dockerignore excludes.
    fn ignored(
        &mut self,
        config: &Config,
        node: &Node,
        vars: &BTreeMap<String, String>,
        lexer: &Lexer,
        inputs: &Inputs,
    ) {
        let Some(ignored) = inputs.ignored else {
            return;
        };
        if node.flags.iter().any(|f| f.text.starts_with("--from=")) || node.args.len() < 2 {
            return;
        }
        let cmd = if node.name == "add" { "Add" } else { "Copy" };
        for raw in &node.args[..node.args.len() - 1] {
            if raw.starts_with("<<") {
                continue;
            }
            let src = expand(lexer, raw, vars);
            if super::instructions::source_kind(&src) != super::instructions::SourceKind::Local {
                continue;
            }
            let clean = crate::context::ignore::clean(&src);
            if ignored(&clean) {
                self.push(
                    config,
                    "CopyIgnoredFile",
                    format!("Attempting to {cmd} file {clean:?} that is excluded by .dockerignore"),
                    node,
                );
            }
        }
    }
}

/// BuildKit's suggest.Search: the option nearest to `val` by Levenshtein
/// distance under 3 (the first of equals), none when one is `val` itself.
fn search<'a>(val: &str, options: &[&'a str]) -> Option<&'a str> {
    let mut best = None;
    let mut min = 3;
    for opt in options {
        if *opt == val {
            return None;
        }
        let d = levenshtein(val, opt);
        if d < min {
            min = d;
            best = Some(*opt);
        }
    }
    best
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for j in 1..=b.len() {
            let here = row[j];
            row[j] = (row[j] + 1)
                .min(row[j - 1] + 1)
                .min(prev + usize::from(ca != b[j - 1]));
            prev = here;
        }
    }
    row[b.len()]
}

/// BuildKit's secret-name pattern: a `_`-separated part of the name is a
/// secret word, and none is an allowed one (`public`, `file`, `version`).
fn looks_secret(name: &str) -> bool {
    const DENY: [&str; 10] = [
        "apikey",
        "auth",
        "credential",
        "credentials",
        "key",
        "password",
        "pword",
        "passwd",
        "secret",
        "token",
    ];
    const ALLOW: [&str; 3] = ["public", "file", "version"];
    let lower = name.to_ascii_lowercase();
    let parts: Vec<&str> = lower.split('_').collect();
    parts.iter().any(|p| DENY.contains(p)) && !parts.iter().any(|p| ALLOW.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::{Source, parse};

    fn ast(text: &str) -> Ast {
        parse(&Source::new("Dockerfile", text.as_bytes())).unwrap()
    }

    fn rules(text: &str) -> Vec<(&'static str, String)> {
        let ignored = |p: &str| p == "ignored";
        let base = |_: &str| {
            Some(BaseFacts {
                platform: host_platform(),
                env: vec!["PATH".into()],
                ..Default::default()
            })
        };
        let inputs = Inputs {
            ignored: Some(&ignored),
            base: Some(&base),
            ..Default::default()
        };
        lint_with(&ast(text), &inputs)
            .into_iter()
            .map(|f| (f.rule, f.message))
            .collect()
    }

    /// The messages of one rule's findings.
    fn messages_of(rule: &str, text: &str) -> Vec<String> {
        rules(text)
            .into_iter()
            .filter(|(r, _)| *r == rule)
            .map(|(_, m)| m)
            .collect()
    }

    #[test]
    fn each_rule_fires() {
        let found = rules(concat!(
            "# check=experimental=all\n",
            "ARG BASE=a\n",
            "FROM --platform=linux/amd64 $BASE as Builder\n",
            "MAINTAINER me\n",
            "ENV PATH /x\n",
            "ARG GITHUB_TOKEN\n",
            "WORKDIR app\n",
            "CMD echo a\n",
            "CMD [\"b\"]\n",
            "COPY $UNDEFINED /x\n",
            "run x \\\n\n y\n",
            "FROM $NOPE AS scratch\n",
            "COPY ignored /x\n",
            "FROM a AS builder\n",
            "FROM --platform=$TARGETPLATFORM a\n",
            "EXPOSE 80/TCP 127.0.0.1:80:80\n",
            "# not its name\n",
            "ARG X=1\n",
            "FROM busybox:$NODEF\n",
        ));
        let names: Vec<&str> = found.iter().map(|(r, _)| *r).collect();
        for rule in RULES
            .iter()
            .filter(|r| r.name != "InvalidBaseImagePlatform")
        {
            assert!(
                names.contains(&rule.name),
                "{} did not fire: {found:#?}",
                rule.name
            );
        }
    }

    #[test]
    fn the_base_images_platform_is_compared() {
        let base = |_: &str| {
            Some(BaseFacts {
                platform: host_platform(),
                other_platform: Some("linux/arm64".into()),
                ..Default::default()
            })
        };
        let inputs = Inputs {
            base: Some(&base),
            ..Default::default()
        };
        let found = lint_with(&ast("FROM img\nENV a=b\n"), &inputs);
        assert_eq!(
            found[0].message,
            format!(
                "Base image img was pulled with platform \"linux/arm64\", expected \"{}\" for current build",
                host_platform()
            )
        );
    }

    /// BuildKit recommends JSON arguments only under the default shell: a
    /// SHELL in the stage, or in a stage it is FROM, silences it.
    #[test]
    fn json_args_are_recommended_only_under_the_default_shell() {
        let count = |text: &str| messages_of("JSONArgsRecommended", text).len();
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
        let found = |text: &str| messages_of("InvalidDefaultArgInFrom", text);
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
            "FROM --platform=${TARGETPLATFORM} a\nEXPOSE 80/TcP 80:80 53/udp 8080\nFROM --platform=$BUILDPLATFORM b\n",
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

    /// BuildKit's testUnmatchedVars, with a base image whose Env is PATH.
    #[test]
    fn undefined_variables_and_their_suggestions() {
        let undefined = |text: &str| messages_of("UndefinedVar", text);
        assert!(undefined("FROM scratch\nARG foo\nCOPY Dockerfile${foo} .\n").is_empty());
        assert!(
            undefined("FROM a AS base\nARG foo=Dockerfile\nFROM base\nCOPY $foo .\n").is_empty()
        );
        assert!(undefined("FROM a\nRUN echo $PATH\n").is_empty());
        assert_eq!(
            undefined("FROM a\nCOPY $foo .\nARG foo=bar\nRUN echo $foo\n"),
            ["Usage of undefined variable '$foo'"]
        );
        assert_eq!(
            undefined(
                "FROM a\nARG DIR_BINARIES=binaries/\nARG DIR_ASSETS=assets/\nCOPY $DIR_ASSET .\n"
            ),
            ["Usage of undefined variable '$DIR_ASSET' (did you mean $DIR_ASSETS?)"]
        );
        assert_eq!(
            undefined("FROM a\nENV PATH=$PAHT:/tmp/bin\n"),
            ["Usage of undefined variable '$PAHT' (did you mean $PATH?)"]
        );
        // A base whose variables are not known is not judged.
        let unknown = lint_with(&ast("FROM a\nCOPY $foo .\n"), &Inputs::default());
        assert!(unknown.is_empty(), "{unknown:?}");
    }

    /// A build reports the dispatch rules of the stages it reaches only.
    #[test]
    fn a_build_lints_the_stages_it_reaches() {
        let text = "FROM scratch AS a\nFROM a AS b\nENV k v\nFROM a AS c\n";
        let stages = [0, 2];
        let inputs = Inputs {
            stages: Some(&stages),
            ..Default::default()
        };
        assert!(lint_with(&ast(text), &inputs).is_empty());
        assert_eq!(lint(&ast(text)).len(), 1);
    }

    #[test]
    fn copy_ignored_file_needs_the_context() {
        let text =
            "FROM a\nCOPY ./secret.env app/ /dst/\nCOPY --from=b secret.env /x\nADD ${V} /y\n";
        assert!(lint(&ast(text)).is_empty());
        let ignored = |p: &str| p == "secret.env";
        let inputs = Inputs {
            ignored: Some(&ignored),
            ..Default::default()
        };
        let found: Vec<String> = lint_with(&ast(text), &inputs)
            .into_iter()
            .map(|f| f.message)
            .collect();
        assert_eq!(
            found,
            ["Attempting to Copy file \"secret.env\" that is excluded by .dockerignore"]
        );
    }

    #[test]
    fn messages_and_lines() {
        let found = lint(&ast("\nfrom a AS Build\nMAINTAINER x\nENV A b\n"));
        let got: Vec<(usize, &str)> = found.iter().map(|f| (f.line, f.message.as_str())).collect();
        assert_eq!(
            got,
            [
                (2, "'AS' and 'from' keywords' casing do not match"),
                (
                    2,
                    "Command 'from' should match the case of the command majority (uppercase)"
                ),
                (2, "Stage name 'Build' should be lowercase"),
                (
                    3,
                    "Maintainer instruction is deprecated in favor of using label"
                ),
                (
                    4,
                    "\"ENV key=value\" should be used instead of legacy \"ENV key value\" format"
                ),
            ]
        );
        assert_eq!(
            found[0].short(),
            "FromAsCasing: 'AS' and 'from' keywords' casing do not match (line 2)"
        );
    }

    #[test]
    fn clean_file_has_no_findings() {
        assert!(
            rules("ARG V=1\nFROM a:$V AS build\nWORKDIR /app\nENV A=b\nCMD [\"x\"]\n").is_empty()
        );
    }

    #[test]
    fn check_directive_skips_promotes_and_a_comment_adds() {
        assert!(rules("# check=skip=MaintainerDeprecated\nFROM a\nMAINTAINER x\n").is_empty());
        assert!(rules("# check=skip=all\nFROM a\nMAINTAINER x\nCMD y\n").is_empty());
        assert!(
            rules("FROM a\n# check=skip=LegacyKeyValueFormat\nENV k v\n").is_empty(),
            "a comment above the instruction"
        );
        let c = Config::parse("skip=A, B;error=true").unwrap();
        assert!(c.error && c.skip.contains("A") && c.skip.contains("B"));
        assert_eq!(
            Config::parse("skip").unwrap_err(),
            "invalid check option \"skip\""
        );
        assert_eq!(
            Config::parse("color=red").unwrap_err(),
            "invalid check option \"color\""
        );
        assert!(Config::parse("error=yes").is_err());
        // The build arg replaces the directive.
        let file = ast("# check=error=true\nFROM a\n");
        assert!(!Config::for_file(&file, Some("skip=all")).unwrap().error);
        // Experimental rules need naming.
        assert!(!Config::default().wants("InvalidDefinitionDescription"));
        assert!(
            Config::parse("skip=all;experimental=InvalidDefinitionDescription")
                .unwrap()
                .wants("InvalidDefinitionDescription")
        );
    }

    #[test]
    fn buildkits_suggestion_search() {
        assert_eq!(search("PAHT", &["PATH"]), Some("PATH"));
        assert_eq!(
            search("MYARCH", &["MY_ARCH", "TARGETARCH"]),
            Some("MY_ARCH")
        );
        assert_eq!(search("version", &["TARGETOS"]), None);
        assert!(looks_secret("SECRET_PASSPHRASE") && !looks_secret("PUBLIC_KEY"));
    }
}
