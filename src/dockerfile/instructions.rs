//! The typed layer: syntax nodes → instructions with validated flags and
//! arguments, grouped into stages. Arguments are not expanded here; `$VAR`
//! stays as written until the planner expands it with a stage's values.
//!
//! Unlike BuildKit, which stops at the first bad instruction, this layer
//! checks every instruction and returns every error, so `kiln check` can
//! report them all at once.

use super::error::{Error, ErrorKind};
use super::flags::{self, Kind};
use super::heredoc;
use super::mount::{self, Mount};
use super::source::Span;
use super::syntax::{Ast, Directive, Heredoc, Node};
use serde::Serialize;
use std::time::Duration;

/// Every instruction the Dockerfile reference defines, lower case.
pub const INSTRUCTIONS: [&str; 18] = [
    "add",
    "arg",
    "cmd",
    "copy",
    "entrypoint",
    "env",
    "expose",
    "from",
    "healthcheck",
    "label",
    "maintainer",
    "onbuild",
    "run",
    "shell",
    "stopsignal",
    "user",
    "volume",
    "workdir",
];

/// A command in exec form (JSON array) or shell form (one string).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Command {
    /// `["prog", "arg"]`: run as is.
    Exec(Vec<String>),
    /// `prog arg`: run through the SHELL.
    Shell(String),
}

impl Command {
    fn from_node(node: &Node) -> Command {
        if node.json {
            Command::Exec(node.args.clone())
        } else {
            Command::Shell(node.args.first().cloned().unwrap_or_default())
        }
    }

    /// True for `CMD []` or an empty shell string.
    pub fn is_empty(&self) -> bool {
        match self {
            Command::Exec(v) => v.is_empty(),
            Command::Shell(s) => s.is_empty(),
        }
    }
}

/// A `key=value` pair of ENV or LABEL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeyValue {
    /// The key, unexpanded.
    pub key: String,
    /// The value, unexpanded, quotes still in place.
    pub value: String,
    /// True for the legacy `ENV key value` form.
    pub legacy: bool,
}

/// One name declared by ARG.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ArgDecl {
    /// The name.
    pub name: String,
    /// The default, when given (`ARG name=default`).
    pub default: Option<String>,
}

/// RUN's network mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// The builder's default (kiln: the host's network).
    Default,
    /// Only loopback.
    None,
    /// The host's network.
    Host,
}

/// RUN's security mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// The default sandbox.
    Sandbox,
    /// All capabilities (needs the builder's permission).
    Insecure,
}

/// FROM.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct From {
    /// The image reference, stage name or `scratch`, unexpanded.
    pub image: String,
    /// The stage's name from `AS name`, lower case.
    pub name: Option<String>,
    /// `--platform`.
    pub platform: Option<String>,
}

/// RUN.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Run {
    /// What to run.
    pub command: Command,
    /// Heredoc bodies the command refers to.
    pub heredocs: Vec<Heredoc>,
    /// `--mount`s, in order.
    pub mounts: Vec<Mount>,
    /// `--network`.
    pub network: Network,
    /// `--security`.
    pub security: Security,
}

/// COPY and ADD.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Copy {
    /// Sources as written, unexpanded; a word that is a heredoc opener
    /// (`<<EOF`, see [`heredoc::parse`]) names one of `heredocs`.
    pub sources: Vec<String>,
    /// Destination, unexpanded.
    pub dest: String,
    /// The heredoc sources, one per opener among `sources`, in their order
    /// (BuildKit's SourceContents): name, `expand` and `chomp` as that
    /// opener says, content the body of the heredoc of that name with
    /// `<<-`'s tabs already stripped, not yet expanded.
    pub heredocs: Vec<Heredoc>,
    /// `--from` (COPY only).
    pub from: Option<String>,
    /// `--chown`.
    pub chown: Option<String>,
    /// `--chmod`.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--parents` (COPY only).
    pub parents: bool,
    /// `--exclude` patterns.
    pub exclude: Vec<String>,
    /// `--keep-git-dir` (ADD only).
    pub keep_git_dir: bool,
    /// `--checksum` (ADD only).
    pub checksum: Option<String>,
    /// `--unpack` (ADD only): None leaves it to the source's kind.
    pub unpack: Option<bool>,
}

/// HEALTHCHECK.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable the base image's check.
    None,
    /// `HEALTHCHECK [flags] CMD ...`.
    Cmd {
        /// The check command.
        command: Command,
        /// `--interval`.
        interval: Option<Duration>,
        /// `--timeout`.
        timeout: Option<Duration>,
        /// `--start-period`.
        start_period: Option<Duration>,
        /// `--start-interval`.
        start_interval: Option<Duration>,
        /// `--retries`.
        retries: Option<u32>,
    },
}

/// One typed instruction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Instruction {
    /// FROM.
    From(From),
    /// RUN.
    Run(Run),
    /// CMD.
    Cmd(Command),
    /// ENTRYPOINT.
    Entrypoint(Command),
    /// SHELL.
    Shell(Vec<String>),
    /// ENV.
    Env(Vec<KeyValue>),
    /// LABEL.
    Label(Vec<KeyValue>),
    /// ARG.
    Arg(Vec<ArgDecl>),
    /// MAINTAINER.
    Maintainer(String),
    /// EXPOSE.
    Expose(Vec<String>),
    /// ADD.
    Add(Copy),
    /// COPY.
    Copy(Copy),
    /// VOLUME.
    Volume(Vec<String>),
    /// USER.
    User(String),
    /// WORKDIR.
    Workdir(String),
    /// STOPSIGNAL.
    StopSignal(String),
    /// HEALTHCHECK.
    Healthcheck(Healthcheck),
    /// ONBUILD: the trigger, and its text as stored in the image config.
    Onbuild(Box<Instruction>, String),
}

/// An instruction with where it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Step {
    /// The instruction.
    pub instruction: Instruction,
    /// The keyword as written.
    pub keyword: String,
    /// The logical line (continuations joined).
    pub original: String,
    /// 1-based first line.
    pub line: usize,
    /// The whole instruction's span.
    pub span: Span,
}

/// A build stage: FROM and what follows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Stage {
    /// Its FROM.
    pub from: From,
    /// The FROM step itself (for locations).
    pub from_step: Step,
    /// The instructions after FROM.
    pub steps: Vec<Step>,
}

/// A Dockerfile with typed instructions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Dockerfile {
    /// Parser directives.
    pub directives: Vec<Directive>,
    /// The escape token.
    pub escape: char,
    /// ARGs before the first FROM (visible to FROM lines).
    pub global_args: Vec<Step>,
    /// The stages, in order.
    pub stages: Vec<Stage>,
}

/// Types every node of `ast`; returns the file and every error found.
pub fn typed(ast: &Ast) -> (Dockerfile, Vec<Error>) {
    let mut file = Dockerfile {
        directives: ast.directives.clone(),
        escape: ast.escape,
        global_args: Vec::new(),
        stages: Vec::new(),
    };
    let mut errors = Vec::new();
    for node in &ast.nodes {
        let instruction = match instruction(node, 0) {
            Ok(i) => i,
            Err(mut e) => {
                errors.append(&mut e);
                continue;
            }
        };
        let step = Step {
            instruction,
            keyword: node.keyword.clone(),
            original: node.original.clone(),
            line: node.start_line,
            span: node.span,
        };
        match (&step.instruction, file.stages.last_mut()) {
            (Instruction::From(from), _) => {
                file.stages.push(Stage {
                    from: from.clone(),
                    from_step: step,
                    steps: Vec::new(),
                });
            }
            (_, Some(stage)) => stage.steps.push(step),
            (Instruction::Arg(_), None) => file.global_args.push(step),
            (_, None) => errors.push(
                Error::new(
                    ErrorKind::Instruction(format!(
                        "{} before the first FROM",
                        node.keyword.to_uppercase()
                    )),
                    node.keyword_span,
                )
                .with_hint("only ARG may come before FROM; start the stage with FROM <image>"),
            ),
        }
    }
    if file.stages.is_empty() && errors.is_empty() {
        let at = ast.nodes.last().map_or(Span::default(), |n| n.span);
        errors.push(
            Error::new(
                ErrorKind::Instruction("dockerfile contains no stages to build".into()),
                at,
            )
            .with_hint("start a stage with FROM <image> (or FROM scratch)"),
        );
    }
    (file, errors)
}

fn fail(message: impl Into<String>, span: Span, hint: Option<&str>) -> Vec<Error> {
    let mut e = Error::new(ErrorKind::Instruction(message.into()), span);
    e.hint = hint.map(str::to_string);
    vec![e]
}

/// Where to point at an instruction's arguments (its keyword when it has none).
fn args_at(node: &Node) -> Span {
    if node.args_span.is_empty() {
        node.keyword_span
    } else {
        node.args_span
    }
}

fn parse_flags(node: &Node, allowed: &[(&'static str, Kind)]) -> Result<flags::Parsed, Vec<Error>> {
    let name = node.keyword.to_uppercase();
    flags::parse(&name, &node.flags, allowed).map_err(|errs| {
        errs.into_iter()
            .map(|(m, span, hint)| {
                let mut e = Error::new(ErrorKind::Instruction(m), span);
                e.hint = hint;
                e
            })
            .collect()
    })
}

fn instruction(node: &Node, depth: usize) -> Result<Instruction, Vec<Error>> {
    let name = node.name.clone();
    let upper = node.keyword.to_uppercase();
    let at = args_at(node);
    let no_flags = |node: &Node| parse_flags(node, &[]).map(|_| ());
    let exactly_one = |node: &Node| -> Result<String, Vec<Error>> {
        no_flags(node)?;
        match node.args.as_slice() {
            [one] => Ok(one.clone()),
            _ => Err(fail(
                format!("{upper} requires exactly one argument"),
                at,
                None,
            )),
        }
    };
    let at_least_one = |node: &Node| -> Result<Vec<String>, Vec<Error>> {
        no_flags(node)?;
        if node.args.is_empty() {
            return Err(fail(
                format!("{upper} requires at least one argument"),
                at,
                None,
            ));
        }
        Ok(node.args.clone())
    };
    Ok(match name.as_str() {
        "from" => Instruction::From(from(node)?),
        "run" => Instruction::Run(run(node)?),
        "cmd" => {
            no_flags(node)?;
            Instruction::Cmd(Command::from_node(node))
        }
        "entrypoint" => {
            no_flags(node)?;
            Instruction::Entrypoint(Command::from_node(node))
        }
        "shell" => {
            no_flags(node)?;
            if !node.json {
                return Err(fail(
                    "SHELL requires the arguments to be in JSON form",
                    at,
                    Some("write it as SHELL [\"/bin/sh\", \"-c\"]"),
                ));
            }
            if node.args.is_empty() {
                return Err(fail("SHELL requires at least one argument", at, None));
            }
            Instruction::Shell(node.args.clone())
        }
        "env" | "label" => {
            let args = at_least_one(node)?;
            let pairs: Vec<KeyValue> = args
                .chunks(3)
                .map(|c| KeyValue {
                    key: c[0].clone(),
                    value: c.get(1).cloned().unwrap_or_default(),
                    legacy: c.get(2).is_some_and(|s| s.is_empty()),
                })
                .collect();
            if pairs.iter().any(|p| p.key.is_empty()) {
                return Err(fail(
                    format!("{upper} names can not be blank"),
                    at,
                    Some("write it as KEY=value"),
                ));
            }
            if name == "env" {
                Instruction::Env(pairs)
            } else {
                Instruction::Label(pairs)
            }
        }
        "arg" => {
            let args = at_least_one(node)?;
            let decls: Vec<ArgDecl> = args
                .iter()
                .map(|w| match w.split_once('=') {
                    Some((n, v)) => ArgDecl {
                        name: n.to_string(),
                        default: Some(v.to_string()),
                    },
                    None => ArgDecl {
                        name: w.clone(),
                        default: None,
                    },
                })
                .collect();
            if decls.iter().any(|d| d.name.is_empty()) {
                return Err(fail(
                    "ARG names can not be blank",
                    at,
                    Some("write it as ARG name or ARG name=default"),
                ));
            }
            Instruction::Arg(decls)
        }
        "maintainer" => Instruction::Maintainer(exactly_one(node)?),
        "user" => Instruction::User(exactly_one(node)?),
        "workdir" => Instruction::Workdir(exactly_one(node)?),
        "stopsignal" => {
            let signal = exactly_one(node)?;
            if !signal.contains('$') && !valid_signal(&signal) {
                return Err(fail(
                    format!("Invalid signal: {signal}"),
                    at,
                    Some("use a signal name such as SIGTERM or SIGINT, or its number"),
                ));
            }
            Instruction::StopSignal(signal)
        }
        "expose" => {
            // Sorted as written, before expansion, as BuildKit's parser
            // sorts them: the history lists the ports in this order.
            let mut ports = at_least_one(node)?;
            ports.sort();
            for port in ports.iter().filter(|p| !p.contains('$')) {
                if let Err(e) = expose_ports(port) {
                    return Err(fail(
                        e,
                        at,
                        Some("write a port as 80, 80/tcp, 53/udp or 8000-8010/tcp"),
                    ));
                }
            }
            Instruction::Expose(ports)
        }
        "volume" => {
            let volumes = at_least_one(node)?;
            if volumes.iter().any(|v| v.trim().is_empty()) {
                return Err(fail(
                    "VOLUME specified can not be an empty string",
                    at,
                    None,
                ));
            }
            Instruction::Volume(volumes)
        }
        "copy" | "add" => copy(node, name == "add")?,
        "healthcheck" => Instruction::Healthcheck(healthcheck(node)?),
        "onbuild" => onbuild(node, depth)?,
        _ => {
            let hint = flags::suggest(&name, &INSTRUCTIONS)
                .map(|s| format!("did you mean {}?", s.to_uppercase()))
                .unwrap_or_else(|| {
                    "see the Dockerfile reference for the list of instructions".into()
                });
            return Err(fail(
                format!("unknown instruction: {upper}"),
                node.keyword_span,
                Some(&hint),
            ));
        }
    })
}

fn from(node: &Node) -> Result<From, Vec<Error>> {
    let flags = parse_flags(node, &[("platform", Kind::String)])?;
    let at = args_at(node);
    let name = match node.args.as_slice() {
        [_] => None,
        [_, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => {
            let lower = name.to_lowercase();
            let valid = lower.starts_with(|c: char| c.is_ascii_lowercase())
                && lower
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
            if !valid {
                return Err(fail(
                    format!(
                        "invalid name for build stage: {name:?}, name can't start with a number or contain symbols"
                    ),
                    at,
                    Some("use letters, digits, '-', '_' and '.', starting with a letter"),
                ));
            }
            Some(lower)
        }
        _ => {
            return Err(fail(
                "FROM requires either one or three arguments",
                at,
                Some("write it as FROM image or FROM image AS name"),
            ));
        }
    };
    let platform = flags.string("platform");
    if let Some(p) = platform.as_deref().filter(|p| !p.contains('$')) {
        let parts: Vec<&str> = p.split('/').collect();
        if !(1..=3).contains(&parts.len()) || parts.iter().any(|s| s.is_empty()) {
            let span = flags.get("platform").map_or(at, |v| v.span);
            return Err(fail(
                format!("invalid platform {p:?}"),
                span,
                Some("write it as os/arch[/variant], such as linux/amd64"),
            ));
        }
    }
    Ok(From {
        image: node.args[0].clone(),
        name,
        platform,
    })
}

fn run(node: &Node) -> Result<Run, Vec<Error>> {
    let flags = parse_flags(
        node,
        &[
            ("mount", Kind::Repeated),
            ("network", Kind::String),
            ("security", Kind::String),
        ],
    )?;
    if node.args.is_empty() && node.heredocs.is_empty() {
        return Err(fail(
            "RUN requires at least one argument",
            args_at(node),
            Some("give the command to run"),
        ));
    }
    let mut errors = Vec::new();
    let mut mounts = Vec::new();
    for value in flags.all("mount") {
        match mount::parse(&value.value) {
            Ok(m) => mounts.push(m),
            // Read again once expanded, when the step runs.
            Err(msg) if value.value.contains('$') && msg != mount::FROM_EXPANSION => {
                let mut m = mount::parse("type=tmpfs,target=/").expect("a valid mount");
                m.deferred = Some(value.value.clone());
                mounts.push(m);
            }
            Err(msg) => errors.push(Error::new(
                ErrorKind::Instruction(format!("invalid --mount: {msg}")),
                value.span,
            )),
        }
    }
    let network = match flags.get("network").map(|v| (v.value.as_str(), v.span)) {
        None | Some(("default", _)) => Network::Default,
        Some(("none", _)) => Network::None,
        Some(("host", _)) => Network::Host,
        Some((other, span)) => {
            errors.push(
                Error::new(
                    ErrorKind::Instruction(format!("unsupported network mode {other:?}")),
                    span,
                )
                .with_hint("use --network=default, none or host"),
            );
            Network::Default
        }
    };
    let security = match flags.get("security").map(|v| (v.value.as_str(), v.span)) {
        None | Some(("sandbox", _)) => Security::Sandbox,
        Some(("insecure", _)) => Security::Insecure,
        Some((other, span)) => {
            errors.push(
                Error::new(
                    ErrorKind::Instruction(format!("unsupported security mode {other:?}")),
                    span,
                )
                .with_hint("use --security=sandbox or insecure"),
            );
            Security::Sandbox
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Run {
        command: Command::from_node(node),
        heredocs: node.heredocs.clone(),
        mounts,
        network,
        security,
    })
}

fn copy(node: &Node, add: bool) -> Result<Instruction, Vec<Error>> {
    let mut allowed = vec![
        ("chown", Kind::String),
        ("chmod", Kind::String),
        ("link", Kind::Bool),
        ("exclude", Kind::Repeated),
    ];
    if add {
        allowed.extend([
            ("keep-git-dir", Kind::Bool),
            ("checksum", Kind::String),
            ("unpack", Kind::Bool),
        ]);
    } else {
        allowed.extend([("from", Kind::String), ("parents", Kind::Bool)]);
    }
    let flags = parse_flags(node, &allowed)?;
    let upper = node.keyword.to_uppercase();
    let Some((dest, sources)) = node.args.split_last().filter(|(_, s)| !s.is_empty()) else {
        return Err(fail(
            format!(
                "{upper} requires at least two arguments, but only one was provided. Destination could not be determined."
            ),
            args_at(node),
            Some(&format!("write it as {upper} <src>... <dest>")),
        ));
    };
    // BuildKit's parseSourcesAndDest: a heredoc names content, never a place.
    if heredoc::parse(dest).is_some() {
        return Err(fail(
            format!("{upper} cannot accept a heredoc as a destination"),
            args_at(node),
            Some(&format!(
                "end {upper} with a destination path; a heredoc can only be a source"
            )),
        ));
    }
    let mut errors = Vec::new();
    if let Some(v) = flags
        .get("chmod")
        .filter(|v| !v.value.contains('$') && super::chmod::Chmod::parse(&v.value).is_err())
    {
        errors.push(
            Error::new(
                // BuildKit's words for what looks numeric ("64a", "10000").
                ErrorKind::Instruction(if v.value.starts_with(|c: char| c.is_ascii_digit()) {
                    format!(
                        "invalid chmod parameter: '{}'. it should be octal string and between 0 and 07777",
                        v.value
                    )
                } else {
                    format!("invalid chmod {:?}", v.value)
                }),
                v.span,
            )
            .with_hint("use an octal mode such as 0755, or a symbolic one such as u+x,go-w"),
        );
    }
    if let Some(v) = flags
        .get("chown")
        .filter(|v| v.value.is_empty() || v.value.starts_with(':') && v.value.len() == 1)
    {
        errors.push(
            Error::new(
                ErrorKind::Instruction("invalid chown: no user given".into()),
                v.span,
            )
            .with_hint("use --chown=USER[:GROUP]"),
        );
    }
    if let Some(v) = flags.get("checksum") {
        if !v.value.contains('$') && !valid_checksum(&v.value) {
            errors.push(
                Error::new(
                    ErrorKind::Instruction(format!("invalid checksum {:?}", v.value)),
                    v.span,
                )
                .with_hint("use sha256:<64 hex digits> (or sha384, sha512)"),
            );
        }
        // A source with a variable may expand to a URL: the build decides.
        if sources
            .iter()
            .any(|s| !s.contains('$') && source_kind(s) == SourceKind::Local)
        {
            errors.push(
                Error::new(
                    ErrorKind::Instruction("checksum requires HTTP(S) or Git sources".into()),
                    v.span,
                )
                .with_hint("--checksum verifies a downloaded file; drop it for local sources"),
            );
        }
    }
    if let Some(v) = flags.get("from").filter(|v| v.value.contains('$')) {
        errors.push(
            Error::new(
                ErrorKind::Instruction(
                    "variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround".into(),
                ),
                v.span,
            )
            .with_hint("add `FROM ${VAR} AS src` and use --from=src"),
        );
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let c = Copy {
        sources: sources.to_vec(),
        dest: dest.clone(),
        heredocs: heredoc_sources(node, sources),
        from: flags.string("from"),
        chown: flags.string("chown"),
        chmod: flags.string("chmod"),
        link: flags.bool("link"),
        parents: flags.bool("parents"),
        exclude: flags
            .all("exclude")
            .into_iter()
            .map(|v| v.value.clone())
            .collect(),
        keep_git_dir: flags.bool("keep-git-dir"),
        checksum: flags.string("checksum"),
        unpack: flags.get("unpack").map(|v| v.value == "true"),
    };
    Ok(if add {
        Instruction::Add(c)
    } else {
        Instruction::Copy(c)
    })
}

/// The heredoc sources of a COPY/ADD, as BuildKit's parseSourcesAndDest
/// finds them: each source word that is an opener takes the body of the
/// heredoc of its name (the last one, should two share it; none is an
/// empty body) and strips its tabs when that word says `<<-`.
fn heredoc_sources(node: &Node, sources: &[String]) -> Vec<Heredoc> {
    sources
        .iter()
        .filter_map(|word| heredoc::parse(word))
        .map(|opener| {
            let body = node.heredocs.iter().rev().find(|h| h.name == opener.name);
            let content = body.map(|h| h.content.as_str()).unwrap_or_default();
            Heredoc {
                content: match opener.chomp {
                    true => heredoc::chomp(content),
                    false => content.to_string(),
                },
                span: body.map(|h| h.span).unwrap_or_default(),
                ..opener
            }
        })
        .collect()
}

fn healthcheck(node: &Node) -> Result<Healthcheck, Vec<Error>> {
    let at = args_at(node);
    let Some(kind) = node.args.first() else {
        return Err(fail(
            "HEALTHCHECK requires at least one argument",
            at,
            Some("write HEALTHCHECK CMD <command> or HEALTHCHECK NONE"),
        ));
    };
    match kind.to_uppercase().as_str() {
        "NONE" => {
            parse_flags(node, &[])?;
            if node.args.len() > 1 {
                return Err(fail("HEALTHCHECK NONE takes no arguments", at, None));
            }
            Ok(Healthcheck::None)
        }
        "CMD" => {
            let flags = parse_flags(
                node,
                &[
                    ("interval", Kind::String),
                    ("timeout", Kind::String),
                    ("start-period", Kind::String),
                    ("start-interval", Kind::String),
                    ("retries", Kind::String),
                ],
            )?;
            let rest = &node.args[1..];
            if rest.is_empty() || (!node.json && rest[0].is_empty()) {
                return Err(fail("Missing command after HEALTHCHECK CMD", at, None));
            }
            let command = if node.json {
                Command::Exec(rest.to_vec())
            } else {
                Command::Shell(rest[0].clone())
            };
            let mut errors = Vec::new();
            let mut duration = |name: &str| -> Option<Duration> {
                let v = flags.get(name)?;
                match parse_go_duration(&v.value) {
                    Some(0) => None,
                    Some(d) if d >= 1_000_000 => u64::try_from(d).ok().map(Duration::from_nanos),
                    Some(_) => {
                        errors.push(Error::new(
                            ErrorKind::Instruction(format!(
                                "Interval \"{name}\" cannot be less than 1ms"
                            )),
                            v.span,
                        ));
                        None
                    }
                    None => {
                        errors.push(
                            Error::new(
                                ErrorKind::Instruction(format!(
                                    "invalid duration {:?} for --{name}",
                                    v.value
                                )),
                                v.span,
                            )
                            .with_hint("use a duration such as 30s, 1m30s or 500ms"),
                        );
                        None
                    }
                }
            };
            let (interval, timeout, start_period, start_interval) = (
                duration("interval"),
                duration("timeout"),
                duration("start-period"),
                duration("start-interval"),
            );
            let retries = match flags.get("retries") {
                None => None,
                Some(v) => match v.value.parse::<i64>() {
                    Ok(n) if n < 0 => {
                        errors.push(Error::new(
                            ErrorKind::Instruction(format!("--retries cannot be negative ({n})")),
                            v.span,
                        ));
                        None
                    }
                    Ok(n) => u32::try_from(n).ok(),
                    Err(_) => {
                        errors.push(Error::new(
                            ErrorKind::Instruction(format!(
                                "invalid --retries {:?}: must be a number",
                                v.value
                            )),
                            v.span,
                        ));
                        None
                    }
                },
            };
            if !errors.is_empty() {
                return Err(errors);
            }
            Ok(Healthcheck::Cmd {
                command,
                interval,
                timeout,
                start_period,
                start_interval,
                retries,
            })
        }
        other => Err(fail(
            format!("Unknown type {other:?} in HEALTHCHECK (try CMD)"),
            at,
            Some("use HEALTHCHECK CMD <command> or HEALTHCHECK NONE"),
        )),
    }
}

fn onbuild(node: &Node, depth: usize) -> Result<Instruction, Vec<Error>> {
    parse_flags(node, &[])?;
    let Some(child) = &node.child else {
        return Err(fail(
            "ONBUILD requires at least one argument",
            args_at(node),
            Some("write ONBUILD <instruction>"),
        ));
    };
    match child.name.as_str() {
        "onbuild" => {
            return Err(fail(
                "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
                child.keyword_span,
                None,
            ));
        }
        "from" | "maintainer" => {
            return Err(fail(
                format!(
                    "{} isn't allowed as an ONBUILD trigger",
                    child.keyword.to_uppercase()
                ),
                child.keyword_span,
                None,
            ));
        }
        _ => {}
    }
    // The parser hangs the bodies on the ONBUILD node; the trigger is the
    // instruction that opened them.
    let child = Node {
        heredocs: node.heredocs.clone(),
        ..(**child).clone()
    };
    let trigger = instruction(&child, depth + 1)?;
    let text = node.original.trim_start();
    let mut expression = text
        .get(node.keyword.len()..)
        .unwrap_or_default()
        .trim_start()
        .to_string();
    // BuildKit stores the trigger with its heredoc bodies and terminators,
    // so the image's OnBuild text parses back whole in the child build.
    for h in &node.heredocs {
        expression.push('\n');
        expression.push_str(&h.content);
        expression.push_str(&h.name);
    }
    Ok(Instruction::Onbuild(Box::new(trigger), expression))
}

/// Docker's `signal.ParseSignal`: any nonzero number, or a Linux signal name
/// with or without `SIG`.
fn valid_signal(signal: &str) -> bool {
    const NAMES: [&str; 34] = [
        "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT",
        "KILL", "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM",
        "TRAP", "TSTP", "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ",
    ];
    if let Ok(n) = signal.parse::<i64>() {
        return n != 0;
    }
    let upper = signal.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let realtime = |base: &str, sign: char| {
        name == base
            || name
                .strip_prefix(base)
                .and_then(|r| r.strip_prefix(sign))
                .and_then(|n| n.parse::<u8>().ok())
                .is_some_and(|n| (1..=15).contains(&n) && (sign == '+' || n <= 14))
    };
    NAMES.contains(&name) || realtime("RTMIN", '+') || realtime("RTMAX", '-')
}

/// The ports one EXPOSE word names, as BuildKit's `parsePort` reads it:
/// `[ip:][hostport:]port[-end][/proto]`, the IP and host port checked then
/// dropped, a range made into its ports, the protocol lowercased
/// ("80-81/TCP" is `["80/tcp", "81/tcp"]`).
pub fn expose_ports(raw: &str) -> Result<Vec<String>, String> {
    let parts: Vec<&str> = raw.split(':').collect();
    let (ip, host, container) = match parts.len() {
        1 => ("".to_string(), "", parts[0]),
        2 => ("".to_string(), parts[0], parts[1]),
        n => (parts[..n - 2].join(":"), parts[n - 2], parts[n - 1]),
    };
    let (port, proto) = container.split_once('/').unwrap_or((container, ""));
    if port.is_empty() {
        return Err(format!("invalid port: {raw:?}: no port specified"));
    }
    let proto = match proto.to_ascii_lowercase().as_str() {
        "" => "tcp".to_string(),
        p @ ("tcp" | "udp" | "sctp") => p.to_string(),
        _ => return Err(format!("invalid port: {raw:?}: invalid proto: {proto}")),
    };
    let ip = ip
        .strip_prefix('[')
        .and_then(|i| i.strip_suffix(']'))
        .unwrap_or(&ip);
    if !ip.is_empty() && ip.parse::<std::net::IpAddr>().is_err() {
        return Err(format!("invalid IP address: {ip}"));
    }
    let number = |s: &str| -> Option<u32> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u32>().ok())
            .flatten()
            .filter(|&n| n <= 65535)
    };
    let range = |s: &str| -> Option<(u32, u32)> {
        match s.split_once('-') {
            Some((a, b)) if a != b => {
                let (a, b) = (number(a)?, number(b)?);
                (b >= a).then_some((a, b))
            }
            Some((a, _)) => number(a).map(|a| (a, a)),
            None => number(s).map(|a| (a, a)),
        }
    };
    let (start, end) = range(port).ok_or_else(|| format!("invalid containerPort: {port}"))?;
    if !host.is_empty() {
        let (hs, he) = range(host).ok_or_else(|| format!("invalid hostPort: {host}"))?;
        if end - start != he - hs && end != start {
            return Err(format!(
                "invalid ranges specified for container and host Ports: {port} and {host}"
            ));
        }
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

fn valid_checksum(sum: &str) -> bool {
    let Some((algo, hex)) = sum.split_once(':') else {
        return false;
    };
    let want = match algo {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return false,
    };
    hex.len() == want && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// What a COPY or ADD source names: the one place that tells a URL or a
/// git repository from a path (`kiln check` and `kiln build` agree).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// A path in the context or a stage.
    Local,
    /// A file to download.
    Http,
    /// A git repository to clone.
    Git,
}

/// The kind of source `src` (expanded) names.
pub fn source_kind(src: &str) -> SourceKind {
    let http = src.starts_with("http://") || src.starts_with("https://");
    if src.starts_with("git@")
        || src.starts_with("git://")
        || (http && (src.ends_with(".git") || src.contains(".git#")))
    {
        SourceKind::Git
    } else if http {
        SourceKind::Http
    } else {
        SourceKind::Local
    }
}

/// Parses a Go duration (`300ms`, `1h30m`, `1.5s`, `-2s`) into signed
/// nanoseconds; None when malformed.
pub fn parse_go_duration(text: &str) -> Option<i128> {
    let (sign, mut s) = match text.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, text.strip_prefix('+').unwrap_or(text)),
    };
    if s == "0" {
        return Some(0);
    }
    if s.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !s.is_empty() {
        let num_end = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (num, rest) = s.split_at(num_end);
        let value: f64 = num.parse().ok()?;
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let (unit, rest) = rest.split_at(unit_end);
        let nanos = match unit {
            "ns" => 1e0,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += value * nanos;
        s = rest;
    }
    // Go's limit: durations are int64 nanoseconds.
    if !total.is_finite() || total > i64::MAX as f64 {
        return None;
    }
    Some(sign * total as i128)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::{Source, parse};

    fn typed_text(text: &str) -> (Dockerfile, Vec<String>) {
        let ast = parse(&Source::new("Dockerfile", text.as_bytes())).unwrap();
        let (file, errors) = typed(&ast);
        (file, errors.into_iter().map(|e| e.to_string()).collect())
    }

    fn errors(text: &str) -> Vec<String> {
        typed_text(text).1
    }

    #[test]
    fn groups_stages_and_global_args() {
        let (file, errs) =
            typed_text("ARG V=1\nFROM a AS Build\nRUN x\nFROM build\nCOPY --from=build /a /b\n");
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(file.global_args.len(), 1);
        assert_eq!(file.stages.len(), 2);
        assert_eq!(file.stages[0].from.name.as_deref(), Some("build"));
        let Instruction::Copy(c) = &file.stages[1].steps[0].instruction else {
            panic!()
        };
        assert_eq!(
            (c.from.as_deref(), c.sources.as_slice(), c.dest.as_str()),
            (Some("build"), &["/a".to_string()][..], "/b")
        );
    }

    #[test]
    fn reports_every_error_not_just_the_first() {
        let errs = errors("FROM a\nRUNN x\nCOPY onlyone\nEXPOSE 99999\nWORKDIR\n");
        assert_eq!(
            errs,
            [
                "unknown instruction: RUNN",
                "COPY requires at least two arguments, but only one was provided. Destination could not be determined.",
                "invalid containerPort: 99999",
                "WORKDIR requires exactly one argument",
            ]
        );
    }

    #[test]
    fn instruction_before_from() {
        assert_eq!(errors("RUN x\nFROM a\n"), ["RUN before the first FROM"]);
        assert_eq!(
            errors("ARG x\n"),
            ["dockerfile contains no stages to build"]
        );
    }

    #[test]
    fn from_forms() {
        assert_eq!(
            errors("FROM a b\n"),
            ["FROM requires either one or three arguments"]
        );
        assert_eq!(
            errors("FROM a AS 1x\n")[0],
            "invalid name for build stage: \"1x\", name can't start with a number or contain symbols"
        );
        assert_eq!(
            errors("FROM --platform=linux/ a\n"),
            ["invalid platform \"linux/\""]
        );
        // A name used twice is a lint warning (DuplicateStageName), as in
        // BuildKit, not an error.
        assert!(errors("FROM a AS x\nFROM b AS X\n").is_empty());
        assert!(errors("FROM --platform=$BUILDPLATFORM a\n").is_empty());
    }

    #[test]
    fn run_flags() {
        let (file, errs) = typed_text(
            "FROM a\nRUN --network=none --security=insecure --mount=type=cache,target=/c echo\n",
        );
        assert!(errs.is_empty(), "{errs:?}");
        let Instruction::Run(r) = &file.stages[0].steps[0].instruction else {
            panic!()
        };
        assert_eq!(
            (r.network, r.security, r.mounts.len()),
            (Network::None, Security::Insecure, 1)
        );
        assert_eq!(
            errors("FROM a\nRUN --network=bridge x\n"),
            ["unsupported network mode \"bridge\""]
        );
        assert_eq!(
            errors("FROM a\nRUN --mount=type=cache x\n"),
            ["invalid --mount: a cache mount needs a target: add target=/path"]
        );
        assert_eq!(errors("FROM a\nRUN --foo x\n"), ["unknown flag: --foo"]);
        assert_eq!(
            errors("FROM a\nRUN\n"),
            ["RUN requires at least one argument"]
        );
    }

    #[test]
    fn copy_and_add_flags() {
        assert!(
            errors(
                "FROM a\nCOPY --chown=1:1 --chmod=u+x,go-w --link --parents --exclude=*.md . /\n"
            )
            .is_empty()
        );
        assert!(errors("FROM a\nADD --keep-git-dir --unpack=false --checksum=sha256:0000000000000000000000000000000000000000000000000000000000000000 https://x/y /\n").is_empty());
        assert_eq!(
            errors("FROM a\nADD --from=x a b\n"),
            ["unknown flag: --from"]
        );
        assert_eq!(
            errors("FROM a\nCOPY --chmod=888 a b\n"),
            ["invalid chmod parameter: '888'. it should be octal string and between 0 and 07777"]
        );
        assert_eq!(
            errors("FROM a\nADD --checksum=sha256:abc https://x /\n"),
            ["invalid checksum \"sha256:abc\""]
        );
        assert_eq!(
            errors(
                "FROM a\nADD --checksum=sha256:0000000000000000000000000000000000000000000000000000000000000000 f /\n"
            ),
            ["checksum requires HTTP(S) or Git sources"]
        );
    }

    #[test]
    fn healthcheck_forms() {
        let (file, errs) = typed_text(
            "FROM a\nHEALTHCHECK --interval=5s --retries=3 CMD curl -f x\nHEALTHCHECK NONE\n",
        );
        assert!(errs.is_empty(), "{errs:?}");
        let Instruction::Healthcheck(Healthcheck::Cmd {
            interval,
            retries,
            command,
            ..
        }) = &file.stages[0].steps[0].instruction
        else {
            panic!()
        };
        assert_eq!(
            (*interval, *retries, command),
            (
                Some(Duration::from_secs(5)),
                Some(3),
                &Command::Shell("curl -f x".into())
            )
        );
        assert_eq!(
            errors("FROM a\nHEALTHCHECK NONE x\n"),
            ["HEALTHCHECK NONE takes no arguments"]
        );
        assert_eq!(
            errors("FROM a\nHEALTHCHECK CMD\n"),
            ["Missing command after HEALTHCHECK CMD"]
        );
        assert_eq!(
            errors("FROM a\nHEALTHCHECK TEST x\n"),
            ["Unknown type \"TEST\" in HEALTHCHECK (try CMD)"]
        );
        assert_eq!(
            errors("FROM a\nHEALTHCHECK --interval=1us CMD x\n"),
            ["Interval \"interval\" cannot be less than 1ms"]
        );
        assert_eq!(
            errors("FROM a\nHEALTHCHECK --timeout=5 CMD x\n"),
            ["invalid duration \"5\" for --timeout"]
        );
        assert_eq!(
            errors("FROM a\nHEALTHCHECK --retries=-1 CMD x\n"),
            ["--retries cannot be negative (-1)"]
        );
        assert_eq!(
            errors("FROM a\nHEALTHCHECK --interval=-2s CMD x\n"),
            ["Interval \"interval\" cannot be less than 1ms"]
        );
    }

    #[test]
    fn onbuild_rules() {
        let (file, errs) = typed_text("FROM a\nONBUILD RUN echo hi\n");
        assert!(errs.is_empty());
        let Instruction::Onbuild(trigger, text) = &file.stages[0].steps[0].instruction else {
            panic!()
        };
        assert!(matches!(**trigger, Instruction::Run(_)));
        assert_eq!(text, "RUN echo hi");
        assert_eq!(
            errors("FROM a\nONBUILD ONBUILD RUN x\n"),
            ["Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"]
        );
        assert_eq!(
            errors("FROM a\nONBUILD FROM b\n"),
            ["FROM isn't allowed as an ONBUILD trigger"]
        );
        assert_eq!(
            errors("FROM a\nONBUILD MAINTAINER b\n"),
            ["MAINTAINER isn't allowed as an ONBUILD trigger"]
        );
    }

    #[test]
    fn heredoc_cannot_be_a_copy_destination() {
        assert_eq!(
            errors("FROM a\nCOPY /foo <<EOF\nEOF\n"),
            ["COPY cannot accept a heredoc as a destination"]
        );
        assert_eq!(
            errors("FROM a\nADD <<A <<-B\nA\nB\n"),
            ["ADD cannot accept a heredoc as a destination"]
        );
        // A word that is no opener is a path.
        assert!(errors("FROM a\nCOPY <<EOF a<<b\nEOF\n").is_empty());
    }

    #[test]
    fn copy_heredoc_sources_follow_their_openers() {
        let (file, errs) = typed_text(concat!(
            "FROM a\nCOPY <<-A foo <<'B' <<C /d/\n",
            "\tx $V\n\tA\n",
            "\ty $V\nB\n",
            "C\n"
        ));
        assert!(errs.is_empty(), "{errs:?}");
        let Instruction::Copy(c) = &file.stages[0].steps[0].instruction else {
            panic!()
        };
        let got: Vec<_> = c
            .heredocs
            .iter()
            .map(|h| (h.name.as_str(), h.content.as_str(), h.expand, h.chomp))
            .collect();
        assert_eq!(
            got,
            [
                ("A", "x $V\n", true, true),
                ("B", "\ty $V\n", false, false),
                ("C", "", true, false)
            ]
        );
        assert_eq!(c.sources, ["<<-A", "foo", "<<'B'", "<<C"]);
    }

    #[test]
    fn onbuild_keeps_heredoc_bodies() {
        let (file, errs) =
            typed_text("FROM a\nONBUILD RUN <<EOF\necho hi\nEOF\nONBUILD COPY <<-X /x\n\ty\n\tX\n");
        assert!(errs.is_empty(), "{errs:?}");
        let steps = &file.stages[0].steps;
        let Instruction::Onbuild(trigger, text) = &steps[0].instruction else {
            panic!()
        };
        assert_eq!(text, "RUN <<EOF\necho hi\nEOF");
        let Instruction::Run(run) = trigger.as_ref() else {
            panic!()
        };
        assert_eq!(run.heredocs[0].content, "echo hi\n");
        let Instruction::Onbuild(trigger, text) = &steps[1].instruction else {
            panic!()
        };
        assert_eq!(text, "COPY <<-X /x\n\ty\nX");
        let Instruction::Copy(c) = trigger.as_ref() else {
            panic!()
        };
        assert_eq!(c.heredocs[0].content, "y\n");
        // The stored text parses back to the same trigger.
        let (again, errs) = typed_text(&format!("FROM a\n{text}\n"));
        assert!(errs.is_empty(), "{errs:?}");
        let Instruction::Copy(parsed) = &again.stages[0].steps[0].instruction else {
            panic!()
        };
        assert_eq!(
            (&parsed.sources, &parsed.heredocs[0].content),
            (&c.sources, &c.heredocs[0].content)
        );
    }

    #[test]
    fn stop_signals() {
        for ok in ["SIGTERM", "term", "9", "SIGRTMIN+3", "RTMAX-14", "$SIG"] {
            assert!(
                errors(&format!("FROM a\nSTOPSIGNAL {ok}\n")).is_empty(),
                "{ok}"
            );
        }
        assert_eq!(
            errors("FROM a\nSTOPSIGNAL SIGFOO\n"),
            ["Invalid signal: SIGFOO"]
        );
        assert_eq!(errors("FROM a\nSTOPSIGNAL 0\n"), ["Invalid signal: 0"]);
        assert_eq!(
            errors("FROM a\nSTOPSIGNAL RTMAX-15\n"),
            ["Invalid signal: RTMAX-15"]
        );
    }

    #[test]
    fn shell_env_arg() {
        assert_eq!(
            errors("FROM a\nSHELL /bin/sh -c\n"),
            ["SHELL requires the arguments to be in JSON form"]
        );
        assert_eq!(errors("FROM a\nENV =x\n"), ["ENV names can not be blank"]);
        assert_eq!(errors("FROM a\nARG =x\n"), ["ARG names can not be blank"]);
        let (file, _) = typed_text("FROM a\nENV A 1 2\nARG B C=3\n");
        let Instruction::Env(kv) = &file.stages[0].steps[0].instruction else {
            panic!()
        };
        assert_eq!(
            kv[0],
            KeyValue {
                key: "A".into(),
                value: "1 2".into(),
                legacy: true
            }
        );
        let Instruction::Arg(decls) = &file.stages[0].steps[1].instruction else {
            panic!()
        };
        assert_eq!(
            decls[1],
            ArgDecl {
                name: "C".into(),
                default: Some("3".into())
            }
        );
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("1m30s"), Some(90_000_000_000));
        assert_eq!(parse_go_duration("1.5s"), Some(1_500_000_000));
        assert_eq!(parse_go_duration("250ms"), Some(250_000_000));
        assert_eq!(parse_go_duration("-1h"), Some(-3_600_000_000_000));
        assert_eq!(parse_go_duration("0"), Some(0));
        assert_eq!(parse_go_duration("5"), None);
        assert_eq!(parse_go_duration("1d"), None);
    }
}
