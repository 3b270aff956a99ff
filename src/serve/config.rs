//! `kiln-serve.toml`: what the service keeps warm, read and checked once at
//! start; a mistake is an error naming the line and column.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Why a config cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is malformed or a key is wrong.
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// Where (1-based).
        line: usize,
        /// Where (1-based).
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A value is not valid.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the key.
        message: String,
    },
}

/// The whole config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the API listens.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// The bearer token every mutating endpoint asks for.
    pub token: Option<String>,
    /// How many builds run at once.
    #[serde(default = "default_max_jobs")]
    pub max_jobs: usize,
    /// The store and its limits.
    #[serde(default)]
    pub store: StoreConfig,
    /// Base images to keep fresh.
    #[serde(default, rename = "base")]
    pub bases: Vec<Base>,
    /// Builds to keep warm.
    #[serde(default, rename = "target")]
    pub targets: Vec<Target>,
    /// `[mirror]`: serve the tracked bases read-only under `/v2/`.
    pub mirror: Option<Mirror>,
    /// `[state]`: where jobs are kept.
    #[serde(default)]
    pub state: StateConfig,
    /// `[cache]`: the fleet's step cache.
    pub cache: Option<FleetCache>,
}

/// `[cache]`: a registry repository where every step result is its own tag,
/// found by its key whichever target, branch or repository made it
/// (`kiln build --cache-from type=registry,ref=REPO,mode=steps`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetCache {
    /// `REGISTRY/NAME`, without a tag.
    pub repo: String,
    /// The bound on its steps' layers (`100GB`): after each job, the
    /// least recently used go first until it fits.
    pub max_size: Option<String>,
    /// Steps unused for this many days go.
    pub keep_days: Option<u64>,
}

/// `[state]`: SQLite in the store (the default), or a PostgreSQL database
/// that any number of replicas share.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// `postgres://USER@HOST/DB` (or `postgresql://`); without it, and
    /// without `KILN_STATE_URL` in the environment (a Kubernetes Secret's
    /// way in), the state is SQLite in the store.
    pub url: Option<String>,
    /// This replica's name in the job table (default: the host's name and
    /// kiln's pid).
    pub replica: Option<String>,
    /// Seconds a running job stays its replica's without a renewal; a
    /// replica that dies loses its jobs to the others after this long.
    #[serde(default = "default_lease")]
    pub lease_seconds: u64,
    /// How often an idle replica looks for work when no notification came
    /// (milliseconds).
    #[serde(default = "default_poll")]
    pub poll_ms: u64,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            url: None,
            replica: None,
            lease_seconds: default_lease(),
            poll_ms: default_poll(),
        }
    }
}

fn default_lease() -> u64 {
    30
}

fn default_poll() -> u64 {
    1000
}

/// `[mirror]` (no keys yet: its presence turns the mirror on).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mirror {}

/// `[store]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// The store's directory (default: as every kiln command).
    pub root: Option<PathBuf>,
    /// The cap on the store's size (`50GB`).
    pub max_size: Option<String>,
    /// No job starts when the store's filesystem has less free (`5GB`).
    pub min_free: Option<String>,
}

/// `[[base]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Base {
    /// The image reference.
    pub image: String,
    /// When its digest is checked (cron).
    pub check: Option<String>,
}

/// `[[target]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// Its name in the API (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// A local context directory.
    pub context: Option<PathBuf>,
    /// A git repository to build instead.
    pub git: Option<String>,
    /// The git ref (branch, tag or commit) to build.
    #[serde(rename = "ref")]
    pub git_ref: Option<String>,
    /// The Dockerfile, relative to the context.
    #[serde(default = "default_dockerfile")]
    pub dockerfile: String,
    /// Build args.
    #[serde(default)]
    pub build_args: BTreeMap<String, String>,
    /// The stage to build.
    pub target: Option<String>,
    /// The registry ref its cache is exported to (mode max) and imported from.
    pub cache_to: Option<String>,
    /// How many cache generations to keep in the registry.
    #[serde(default = "default_generations")]
    pub keep_generations: usize,
    /// RUN cache mounts travel with the cache.
    #[serde(default)]
    pub mounts: bool,
    /// What starts a job: `cron:EXPR`, `base`, `push`.
    #[serde(default)]
    pub triggers: Vec<String>,
    /// The secret of push webhooks (GitHub's HMAC key, GitLab's token).
    pub webhook_secret: Option<String>,
}

/// A git URL's `user:password@` split off: the URL as git is given it (so
/// the secret is never on a command line, which every user of the host
/// can read) and the credentials, percent-decoded.
fn split_userinfo(url: &str) -> (String, Option<(String, String)>) {
    // Only http(s) carries a password there: ssh's `git@` is the login.
    let Some((scheme, rest)) = url
        .split_once("://")
        .filter(|(s, _)| matches!(*s, "http" | "https"))
    else {
        return (url.to_string(), None);
    };
    let host_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..host_end].rfind('@') else {
        return (url.to_string(), None);
    };
    let (info, host) = (&rest[..at], &rest[at + 1..]);
    let decode = |s: &str| {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match (b[i], b.get(i + 1..i + 3)) {
                (b'%', Some(h))
                    if u8::from_str_radix(std::str::from_utf8(h).unwrap_or("x"), 16).is_ok() =>
                {
                    out.push(
                        u8::from_str_radix(std::str::from_utf8(h).unwrap_or("0"), 16).unwrap_or(0),
                    );
                    i += 3;
                }
                (c, _) => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    let (user, pass) = info.split_once(':').unwrap_or((info, ""));
    (
        format!("{scheme}://{host}"),
        Some((decode(user), decode(pass))),
    )
}

impl Target {
    /// The git URL to show (the API, job errors): credentials replaced.
    pub fn git_shown(&self) -> Option<String> {
        self.git.as_deref().map(|url| match split_userinfo(url) {
            (bare, Some(_)) => bare.replacen("://", "://***@", 1),
            (bare, None) => bare,
        })
    }

    /// The git URL without credentials, and the environment that gives
    /// them to git as an Authorization header (`GIT_CONFIG_*`: in git's
    /// environment, which only its owner reads, never on its command line).
    pub fn git_fetch(&self) -> (String, Vec<(String, String)>) {
        use base64::Engine as _;
        let url = self.git.as_deref().unwrap_or_default();
        match split_userinfo(url) {
            (bare, Some((user, pass))) => {
                let token =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
                (
                    bare,
                    vec![
                        ("GIT_CONFIG_COUNT".into(), "1".into()),
                        ("GIT_CONFIG_KEY_0".into(), "http.extraHeader".into()),
                        (
                            "GIT_CONFIG_VALUE_0".into(),
                            format!("Authorization: Basic {token}"),
                        ),
                    ],
                )
            }
            (bare, None) => (bare, Vec::new()),
        }
    }
}

/// A parsed trigger of a target.
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    /// A cron schedule.
    Cron(Box<croner::Cron>),
    /// A tracked base's digest changed.
    Base,
    /// A git push webhook.
    Push,
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_max_jobs() -> usize {
    1
}
fn default_dockerfile() -> String {
    "Dockerfile".into()
}
fn default_generations() -> usize {
    3
}

impl Config {
    /// Reads and checks `path`.
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses and checks `text` (read from `path`).
    pub fn parse(text: &str, path: &std::path::Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map_or((1, 1), |s| line_col(text, s.start));
            ConfigError::Syntax {
                path: path.to_path_buf(),
                line,
                column,
                message: e.message().to_string(),
            }
        })?;
        config.check().map_err(|message| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(config)
    }

    fn check(&self) -> Result<(), String> {
        if self.max_jobs == 0 {
            return Err("max_jobs must be at least 1".into());
        }
        self.listen
            .parse::<std::net::SocketAddr>()
            .map_err(|e| format!("listen = {:?}: {e} (use IP:PORT)", self.listen))?;
        // An empty secret would match a request that sends none at all.
        if self.token.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return Err(
                "token = \"\": an empty token would let any request through (remove the line, or set a long random string)"
                    .into(),
            );
        }
        if let Some(url) = &self.state.url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return Err(format!(
                "[state] url = {url:?}: use postgres://USER@HOST[:PORT]/DATABASE (or leave it out for SQLite in the store)"
            ));
        }
        if let Some(c) = &self.cache {
            crate::builder::CacheSpec::parse(&format!("type=registry,ref={},mode=steps", c.repo))
                .map_err(|e| format!("[cache] repo = {:?}: {e}", c.repo))?;
            if let Some(size) = &c.max_size {
                crate::units::human_size(size).map_err(|e| format!("[cache] max_size: {e}"))?;
            }
        }
        if self.state.lease_seconds < 2 || self.state.poll_ms == 0 {
            return Err("[state] lease_seconds must be at least 2 and poll_ms at least 1".into());
        }
        for size in [&self.store.max_size, &self.store.min_free]
            .into_iter()
            .flatten()
        {
            crate::units::human_size(size)?;
        }
        for base in &self.bases {
            if let Some(c) = &base.check {
                cron(c).map_err(|e| format!("[[base]] {}: check = {c:?}: {e}", base.image))?;
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for t in &self.targets {
            let ok = !t.name.is_empty()
                && t.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !ok {
                return Err(format!(
                    "target name {:?}: use letters, digits, '-', '_' and '.'",
                    t.name
                ));
            }
            if !names.insert(&t.name) {
                return Err(format!("target {:?} is defined twice", t.name));
            }
            match (&t.context, &t.git) {
                (Some(_), None) | (None, Some(_)) => {}
                _ => {
                    return Err(format!(
                        "target {:?}: give either context = DIR or git = URL",
                        t.name
                    ));
                }
            }
            if t.git.is_none() && t.git_ref.is_some() {
                return Err(format!("target {:?}: ref needs git", t.name));
            }
            let dockerfile = std::path::Path::new(&t.dockerfile);
            if dockerfile.is_absolute()
                || dockerfile
                    .components()
                    .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                return Err(format!(
                    "target {:?}: dockerfile = {:?} must be relative to the context, without ..",
                    t.name, t.dockerfile
                ));
            }
            if let Some(r) = &t.cache_to {
                crate::registry::Reference::parse(r)
                    .map_err(|e| format!("target {:?}: cache_to = {r:?}: {e}", t.name))?;
            }
            if t.keep_generations == 0 {
                return Err(format!(
                    "target {:?}: keep_generations must be at least 1",
                    t.name
                ));
            }
            t.parsed_triggers()
                .map_err(|e| format!("target {:?}: {e}", t.name))?;
            if t.webhook_secret
                .as_deref()
                .is_some_and(|w| w.trim().is_empty())
            {
                return Err(format!(
                    "target {:?}: webhook_secret = \"\": an empty secret would accept an unsigned push (set a long random string)",
                    t.name
                ));
            }
            if t.triggers.iter().any(|x| x == "push") && t.webhook_secret.is_none() {
                return Err(format!(
                    "target {:?}: the push trigger needs webhook_secret",
                    t.name
                ));
            }
        }
        Ok(())
    }

    /// What is allowed but unwise, one line each: today a listener beyond
    /// loopback that asks no token.
    pub fn warnings(&self) -> Vec<String> {
        let exposed = self
            .listen
            .parse::<std::net::SocketAddr>()
            .is_ok_and(|a| !a.ip().is_loopback());
        match (exposed, &self.token) {
            (true, None) => vec![format!(
                "listen = {:?} is beyond loopback and no token is set: anyone who reaches it can queue builds (set token = \"...\")",
                self.listen
            )],
            _ => Vec::new(),
        }
    }

    /// The target named `name`.
    pub fn target(&self, name: &str) -> Option<&Target> {
        self.targets.iter().find(|t| t.name == name)
    }
}

impl Target {
    /// Its Dockerfile's bytes, read inside `context` (a git checkout's
    /// symlinks cannot lead out of it).
    pub fn read_dockerfile(&self, context: &std::path::Path) -> std::io::Result<Vec<u8>> {
        use std::io::Read;
        let mut bytes = Vec::new();
        crate::sandbox::fs::Root::open(context)?
            .open_read(&self.dockerfile)?
            .read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    /// Its Dockerfile, typed; None when it cannot be read or parsed.
    pub fn typed_dockerfile(
        &self,
        context: &std::path::Path,
    ) -> Option<crate::dockerfile::instructions::Dockerfile> {
        let text = self.read_dockerfile(context).ok()?;
        let source = crate::dockerfile::Source::new(&self.dockerfile, &text);
        let ast = crate::dockerfile::parse(&source).ok()?;
        Some(crate::dockerfile::instructions::typed(&ast).0)
    }

    /// Its triggers, parsed.
    pub fn parsed_triggers(&self) -> Result<Vec<Trigger>, String> {
        self.triggers
            .iter()
            .map(|t| match t.as_str() {
                "base" => Ok(Trigger::Base),
                "push" => Ok(Trigger::Push),
                t => match t.strip_prefix("cron:") {
                    Some(expr) => cron(expr)
                        .map(|c| Trigger::Cron(Box::new(c)))
                        .map_err(|e| format!("trigger {t:?}: {e}")),
                    None => Err(format!(
                        "trigger {t:?}: use \"cron:EXPR\", \"base\" or \"push\""
                    )),
                },
            })
            .collect()
    }
}

/// A 5-field cron expression (minute hour day month weekday).
pub fn cron(expr: &str) -> Result<croner::Cron, String> {
    expr.parse::<croner::Cron>().map_err(|e| e.to_string())
}

/// 1-based line and column of byte `at` in `text`.
fn line_col(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
listen = "127.0.0.1:8080"
token = "s3cret"
max_jobs = 2
[store]
max_size = "50GB"
min_free = "5GB"
[[base]]
image = "127.0.0.1:5000/library/debian:bookworm"
check = "*/15 * * * *"
[[target]]
name = "app"
context = "/srv/app"
dockerfile = "Dockerfile"
build_args = { VERSION = "1" }
cache_to = "127.0.0.1:5000/cache/app:main"
keep_generations = 3
mounts = true
triggers = ["cron:0 5 * * 1-5", "base", "push"]
webhook_secret = "hmac-secret"
"#;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, std::path::Path::new("kiln-serve.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn the_issues_example_parses() {
        let c = parse(EXAMPLE).unwrap();
        assert_eq!(c.max_jobs, 2);
        assert_eq!(
            crate::units::human_size(c.store.max_size.as_deref().unwrap()),
            Ok(50_000_000_000)
        );
        let t = c.target("app").unwrap();
        assert_eq!(t.build_args["VERSION"], "1");
        assert_eq!(t.parsed_triggers().unwrap().len(), 3);
    }

    #[test]
    fn mistakes_name_the_place_or_the_key() {
        assert_eq!(
            parse("listen = \"127.0.0.1:8080\"\nmax_job = 2\n").unwrap_err(),
            "kiln-serve.toml:2:1: unknown field `max_job`, expected one of `listen`, `token`, `max_jobs`, `store`, `base`, `target`, `mirror`, `state`, `cache`"
        );
        for (text, want) in [
            (
                "[[target]]\nname = \"a b\"\ncontext = \"/x\"\n",
                "target name \"a b\"",
            ),
            (
                "[[target]]\nname = \"a\"\n",
                "give either context = DIR or git = URL",
            ),
            (
                "[[target]]\nname = \"a\"\ncontext = \"/x\"\ntriggers = [\"cron:61 * * * *\"]\n",
                "trigger \"cron:61 * * * *\"",
            ),
            (
                "[[target]]\nname = \"a\"\ncontext = \"/x\"\ntriggers = [\"push\"]\n",
                "the push trigger needs webhook_secret",
            ),
            (
                "[[target]]\nname = \"a\"\ncontext = \"/x\"\ndockerfile = \"../D\"\n",
                "must be relative to the context",
            ),
            (
                "[store]\nmax_size = \"5 parsecs\"\n",
                "invalid size \"5 parsecs\"",
            ),
            ("listen = \"localhost\"\n", "use IP:PORT"),
            (
                "[state]\nurl = \"mysql://db/kiln\"\n",
                "use postgres://USER@HOST[:PORT]/DATABASE",
            ),
            (
                "[state]\nurl = \"postgres://db/kiln\"\nlease_seconds = 1\n",
                "lease_seconds must be at least 2",
            ),
            (
                "token = \"\"\n",
                "an empty token would let any request through",
            ),
            (
                "token = \"  \"\n",
                "an empty token would let any request through",
            ),
            (
                "[[target]]\nname = \"a\"\ncontext = \"/x\"\ntriggers = [\"push\"]\nwebhook_secret = \"\"\n",
                "an empty secret would accept an unsigned push",
            ),
        ] {
            let got = parse(text).unwrap_err();
            assert!(got.contains(want), "{text:?}: {got}");
        }
    }

    #[test]
    fn a_listener_beyond_loopback_without_a_token_is_warned_of() {
        let open = parse("listen = \"0.0.0.0:8080\"\n").unwrap();
        assert_eq!(open.warnings().len(), 1);
        assert!(open.warnings()[0].contains("no token is set"));
        let tokened = parse("listen = \"0.0.0.0:8080\"\ntoken = \"t\"\n").unwrap();
        assert!(tokened.warnings().is_empty());
        let local = parse("listen = \"127.0.0.1:8080\"\n").unwrap();
        assert!(local.warnings().is_empty());
    }
    fn test_target() -> Target {
        Target {
            name: "t".into(),
            context: None,
            git: None,
            git_ref: None,
            dockerfile: "Dockerfile".into(),
            build_args: Default::default(),
            target: None,
            cache_to: None,
            keep_generations: 1,
            mounts: false,
            triggers: Vec::new(),
            webhook_secret: None,
        }
    }

    #[test]
    fn git_credentials_are_never_shown_nor_on_a_command_line() {
        let t = Target {
            git: Some("https://oauth2:GIT%40TOKEN@git.example/repo.git".into()),
            ..test_target()
        };
        assert_eq!(t.git_shown().unwrap(), "https://***@git.example/repo.git");
        let (url, env) = t.git_fetch();
        assert_eq!(url, "https://git.example/repo.git");
        assert_eq!(env[2].1, "Authorization: Basic b2F1dGgyOkdJVEBUT0tFTg==");
        let plain = Target {
            git: Some("https://git.example/a@b/repo.git".into()),
            ..test_target()
        };
        assert_eq!(
            plain.git_fetch(),
            ("https://git.example/a@b/repo.git".into(), vec![])
        );
    }
}
