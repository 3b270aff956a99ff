//! One registry's HTTP client: TLS with the CA certificates docker would
//! trust for it, plain HTTP only for local or `--insecure-registry` hosts,
//! the Basic and Bearer token flows, and retries with backoff for 5xx
//! answers and dropped connections.

use super::RegistryError;
use super::auth::{Challenge, Credentials, parse_challenge};
use base64::Engine as _;
use reqwest::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{RequestBuilder, Response, StatusCode};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::Mutex;

/// Attempts per request (the first and three retries).
const ATTEMPTS: u32 = 4;

/// How kiln reaches registries.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Registries (`host[:port]`) that may be reached over plain HTTP or
    /// with unverified TLS; `localhost` and `127.0.0.1` always may.
    pub insecure: Vec<String>,
    /// docker's `certs.d`: `<dir>/<host[:port]>/*.crt` are CA certificates
    /// trusted for that registry.
    pub certs_dir: PathBuf,
    /// Where docker's config.json is.
    pub docker_config: PathBuf,
    /// Pull mirrors per registry (`docker.io` → `["127.0.0.1:5000"]`),
    /// tried in order before the registry itself.
    pub mirrors: std::collections::BTreeMap<String, Vec<String>>,
}

/// The registries config file: `{"mirrors": {"docker.io": ["host:port"]},
/// "insecure": ["host:port"]}`.
#[derive(Debug, Default, serde::Deserialize)]
struct ConfigFile {
    #[serde(default)]
    mirrors: std::collections::BTreeMap<String, Vec<String>>,
    #[serde(default)]
    insecure: Vec<String>,
}

impl Options {
    /// The defaults, from the environment: `$KILN_CERTS_D` (else
    /// /etc/docker/certs.d), `$DOCKER_CONFIG` (else ~/.docker), and
    /// `$KILN_INSECURE_REGISTRIES` (comma-separated).
    pub fn from_env() -> Options {
        let mut insecure: Vec<String> = std::env::var("KILN_INSECURE_REGISTRIES")
            .map(|v| {
                v.split(',')
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        // The registries file: `$KILN_REGISTRIES_CONF`, else
        // /etc/kiln/registries.json. A broken file is ignored with a
        // warning: it only adds mirrors.
        let path = std::env::var_os("KILN_REGISTRIES_CONF")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/etc/kiln/registries.json"));
        let file: ConfigFile = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                eprintln!("warning: ignoring {}: {e}", path.display());
                ConfigFile::default()
            }),
            Err(_) => ConfigFile::default(),
        };
        insecure.extend(file.insecure);
        Options {
            insecure,
            certs_dir: std::env::var_os("KILN_CERTS_D")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/etc/docker/certs.d")),
            docker_config: super::auth::DockerConfig::default_dir(),
            mirrors: file.mirrors,
        }
    }

    fn is_insecure(&self, registry: &str) -> bool {
        let host = registry.rsplit_once(':').map_or(registry, |(h, _)| h);
        matches!(host, "localhost" | "127.0.0.1" | "[::1]")
            || self.insecure.iter().any(|r| r == registry)
    }
}

/// An HTTP client trusting the certificates in `certs` (docker's
/// `certs.d/<registry>/*.crt`) beside the system's. One is kept per
/// runtime and set of certificates, so that every pull, push and cache
/// transfer of a process (a build's, `kiln serve`'s jobs, the API's)
/// reuses its connections; per runtime, as a connection belongs to the
/// runtime that made it.
fn http_client(certs: &std::path::Path) -> Result<reqwest::Client, RegistryError> {
    type Pool = HashMap<(tokio::runtime::Id, Vec<Vec<u8>>), reqwest::Client>;
    static POOL: std::sync::OnceLock<std::sync::Mutex<Pool>> = std::sync::OnceLock::new();
    let mut pems = Vec::new();
    if let Ok(entries) = std::fs::read_dir(certs) {
        let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            if path.extension().is_some_and(|x| x == "crt") {
                let pem = std::fs::read(&path).map_err(|err| {
                    RegistryError::Tls(format!("reading {}: {err}", path.display()))
                })?;
                reqwest::Certificate::from_pem(&pem).map_err(|err| {
                    RegistryError::Tls(format!(
                        "{} is not a PEM certificate: {err}",
                        path.display()
                    ))
                })?;
                pems.push(pem);
            }
        }
    }
    let key = (tokio::runtime::Handle::current().id(), pems);
    let mut pool = POOL
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(c) = pool.get(&key) {
        return Ok(c.clone());
    }
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .pool_idle_timeout(Duration::from_secs(30))
        .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")));
    for pem in &key.1 {
        let cert = reqwest::Certificate::from_pem(pem)
            .map_err(|err| RegistryError::Tls(err.to_string()))?;
        builder = builder.add_root_certificate(cert);
    }
    let http = builder
        .build()
        .map_err(|e| RegistryError::Tls(e.to_string()))?;
    pool.insert(key, http.clone());
    Ok(http)
}

/// A client for one registry.
pub struct Client {
    http: reqwest::Client,
    base: String,
    /// The registry as references name it.
    pub registry: String,
    creds: Option<Credentials>,
    /// Authorization header per scope, once obtained.
    tokens: Mutex<HashMap<String, String>>,
}

impl Client {
    /// Connects to `registry` (asks `/v2/`), with `creds` or those docker's
    /// config has for it.
    pub async fn connect(
        registry: &str,
        opts: &Options,
        creds: Option<Credentials>,
    ) -> Result<Client, RegistryError> {
        let creds = match creds {
            Some(c) => Some(c),
            None => super::auth::DockerConfig::load(&opts.docker_config)?.credentials(registry)?,
        };
        let insecure = opts.is_insecure(registry);
        let http = http_client(&opts.certs_dir.join(registry))?;
        let host = super::reference::api_host(registry);
        let mut client = Client {
            http,
            base: format!("https://{host}"),
            registry: registry.to_string(),
            creds,
            tokens: Mutex::new(HashMap::new()),
        };
        // HTTPS first; an insecure registry that does not speak it is
        // asked again over HTTP, as docker does.
        match client.http.get(format!("{}/v2/", client.base)).send().await {
            Ok(_) => {}
            Err(_) if insecure => client.base = format!("http://{host}"),
            Err(e) => {
                return Err(RegistryError::Http {
                    registry: registry.to_string(),
                    message: error_chain(&e),
                });
            }
        }
        Ok(client)
    }

    /// `/v2/<rest>` on this registry.
    pub fn url(&self, rest: &str) -> String {
        format!("{}/v2/{rest}", self.base)
    }

    /// The absolute URL of a `Location` header (which may be relative).
    pub fn absolute(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else {
            format!("{}{location}", self.base)
        }
    }

    /// Checks that the credentials open `scope` (for `kiln login`).
    pub async fn check_login(&self) -> Result<(), RegistryError> {
        let r = self.send("", &|h| h.get(self.url(""))).await?;
        match r.status() {
            s if s.is_success() => Ok(()),
            StatusCode::UNAUTHORIZED => Err(RegistryError::Status {
                registry: self.registry.clone(),
                what: "logging in".into(),
                status: 401,
                hint: "the user name or password is wrong".into(),
            }),
            s => Err(RegistryError::Status {
                registry: self.registry.clone(),
                what: "logging in".into(),
                status: s.as_u16(),
                hint: String::new(),
            }),
        }
    }

    /// Sends the request `make` builds, authorized for `scope`
    /// (`repository:team/app:pull`), answering one auth challenge and
    /// retrying 5xx answers and failed connections with backoff.
    pub async fn send(
        &self,
        scope: &str,
        make: &(dyn Fn(&reqwest::Client) -> RequestBuilder + Sync),
    ) -> Result<Response, RegistryError> {
        let mut challenged = false;
        let mut attempt = 0;
        loop {
            let mut req = make(&self.http);
            if let Some(h) = self.tokens.lock().await.get(scope) {
                req = req.header(AUTHORIZATION, h.clone());
            }
            let sent = req.send().await;
            count_request(
                &self.registry,
                sent.as_ref().map_or(0, |r| r.status().as_u16()),
            );
            match sent {
                Ok(r) if r.status() == StatusCode::UNAUTHORIZED && !challenged => {
                    challenged = true;
                    let header = r
                        .headers()
                        .get(WWW_AUTHENTICATE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_challenge);
                    match header {
                        Some(c) => self.authorize(&c, scope).await?,
                        None => return Ok(r),
                    }
                }
                Ok(r) if r.status().is_server_error() && attempt + 1 < ATTEMPTS => {
                    attempt += 1;
                    backoff(attempt).await;
                }
                Ok(r) => return Ok(r),
                Err(e) if attempt + 1 < ATTEMPTS && !e.is_builder() => {
                    attempt += 1;
                    backoff(attempt).await;
                }
                Err(e) => {
                    return Err(RegistryError::Http {
                        registry: self.registry.clone(),
                        message: error_chain(&e),
                    });
                }
            }
        }
    }

    /// Answers a challenge: the Basic header, or a Bearer token from the
    /// realm (asked with the credentials when there are some).
    async fn authorize(&self, challenge: &Challenge, scope: &str) -> Result<(), RegistryError> {
        let basic = self.creds.as_ref().map(|c| {
            let raw = format!("{}:{}", c.username, c.secret);
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(raw)
            )
        });
        let header = match challenge {
            Challenge::Basic => basic.ok_or_else(|| RegistryError::Status {
                registry: self.registry.clone(),
                what: "authenticating".into(),
                status: 401,
                hint: format!("it needs credentials: kiln login {}", self.registry),
            })?,
            Challenge::Bearer {
                realm,
                service,
                scope: asked,
            } => {
                let mut query: Vec<(&str, String)> = Vec::new();
                if let Some(s) = service {
                    query.push(("service", s.clone()));
                }
                for s in scope.split(' ').filter(|s| !s.is_empty()) {
                    query.push(("scope", s.to_string()));
                }
                if scope.is_empty()
                    && let Some(s) = asked
                {
                    query.push(("scope", s.clone()));
                }
                let mut req = self.http.get(realm).query(&query);
                if let Some(b) = &basic {
                    req = req.header(AUTHORIZATION, b.clone());
                }
                let r = req.send().await.map_err(|e| RegistryError::Http {
                    registry: self.registry.clone(),
                    message: format!("getting a token from {realm}: {}", error_chain(&e)),
                })?;
                if !r.status().is_success() {
                    return Err(RegistryError::Status {
                        registry: self.registry.clone(),
                        what: format!("getting a token from {realm}"),
                        status: r.status().as_u16(),
                        hint: format!("check the credentials: kiln login {}", self.registry),
                    });
                }
                let bytes = r.bytes().await.map_err(|e| RegistryError::Http {
                    registry: self.registry.clone(),
                    message: format!("reading the token from {realm}: {}", error_chain(&e)),
                })?;
                let body: serde_json::Value =
                    serde_json::from_slice(&bytes).map_err(|e| RegistryError::Http {
                        registry: self.registry.clone(),
                        message: format!("the token from {realm} is not JSON: {e}"),
                    })?;
                let token = body["token"]
                    .as_str()
                    .or_else(|| body["access_token"].as_str())
                    .ok_or_else(|| RegistryError::Http {
                        registry: self.registry.clone(),
                        message: format!("{realm} answered without a token"),
                    })?;
                format!("Bearer {token}")
            }
        };
        self.tokens.lock().await.insert(scope.to_string(), header);
        Ok(())
    }
}

async fn backoff(attempt: u32) {
    tokio::time::sleep(Duration::from_millis(250 << attempt.min(5))).await;
}

/// Requests this process sent, by registry and status (0: no answer).
static REQUESTS: std::sync::Mutex<BTreeMap<(String, u16), u64>> =
    std::sync::Mutex::new(BTreeMap::new());

fn count_request(registry: &str, status: u16) {
    let mut counts = REQUESTS.lock().unwrap_or_else(|e| e.into_inner());
    *counts.entry((registry.to_string(), status)).or_default() += 1;
}

/// How many requests this process sent to each registry, by status (0:
/// no answer); `kiln serve`'s metrics read it. Process-wide by nature:
/// every client of every build counts.
pub fn request_counts() -> Vec<((String, u16), u64)> {
    REQUESTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

/// An error with its causes, which reqwest keeps apart.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}
