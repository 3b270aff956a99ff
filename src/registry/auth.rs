//! Credentials as docker keeps them: `$DOCKER_CONFIG/config.json` (default
//! `~/.docker`), its `auths`, and the `credsStore`/`credHelpers` helper
//! programs (`docker-credential-<name> get|store|erase`); and the
//! `WWW-Authenticate` challenges of the distribution protocol.

use super::RegistryError;
use base64::Engine as _;
use serde_json::{Map, Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A user name and password (or token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password or identity token.
    pub secret: String,
}

/// docker's config file.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    path: PathBuf,
    value: Value,
}

/// The keys docker files Docker Hub's credentials under.
fn keys_for(registry: &str) -> Vec<String> {
    if registry == super::reference::DOCKER_HUB {
        return vec![
            "https://index.docker.io/v1/".into(),
            "index.docker.io".into(),
            "docker.io".into(),
        ];
    }
    vec![
        registry.to_string(),
        format!("https://{registry}"),
        format!("http://{registry}"),
    ]
}

impl DockerConfig {
    /// The config in `dir` (`$DOCKER_CONFIG`, else `~/.docker`); a missing
    /// file is an empty config.
    pub fn load(dir: &Path) -> Result<DockerConfig, RegistryError> {
        let path = dir.join("config.json");
        let value = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                RegistryError::Credentials(format!("{} is not valid JSON: {e}", path.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => json!({}),
            Err(e) => {
                return Err(RegistryError::Credentials(format!(
                    "reading {}: {e}",
                    path.display()
                )));
            }
        };
        Ok(DockerConfig { path, value })
    }

    /// The registries it holds credentials or a helper for.
    pub fn registries(&self) -> Vec<String> {
        let mut out: Vec<String> = ["auths", "credHelpers"]
            .iter()
            .flat_map(|k| self.value[*k].as_object().into_iter().flatten())
            .map(|(k, _)| k.clone())
            .collect();
        if let Some(store) = self.value["credsStore"].as_str() {
            out.push(format!("every other through docker-credential-{store}"));
        }
        out.sort();
        out.dedup();
        out
    }

    /// The default directory: `$DOCKER_CONFIG`, else `$HOME/.docker`.
    pub fn default_dir() -> PathBuf {
        match std::env::var_os("DOCKER_CONFIG") {
            Some(d) => PathBuf::from(d),
            None => std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/root"))
                .join(".docker"),
        }
    }

    /// The helper for `registry`, if one is configured.
    fn helper(&self, registry: &str) -> Option<String> {
        keys_for(registry)
            .iter()
            .find_map(|k| self.value["credHelpers"][k].as_str())
            .or_else(|| self.value["credsStore"].as_str())
            .map(str::to_string)
    }

    /// The credentials for `registry`, if any.
    pub fn credentials(&self, registry: &str) -> Result<Option<Credentials>, RegistryError> {
        for key in keys_for(registry) {
            let entry = &self.value["auths"][&key];
            if let Some(auth) = entry["auth"].as_str().filter(|a| !a.is_empty()) {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(auth.trim())
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| {
                        RegistryError::Credentials(format!(
                            "the auth of {key} in {} is not base64 of user:password",
                            self.path.display()
                        ))
                    })?;
                let (user, pass) = decoded.split_once(':').unwrap_or((&decoded, ""));
                return Ok(Some(Credentials {
                    username: user.to_string(),
                    secret: pass.to_string(),
                }));
            }
            if let Some(token) = entry["identitytoken"].as_str() {
                return Ok(Some(Credentials {
                    username: "<token>".into(),
                    secret: token.to_string(),
                }));
            }
        }
        match self.helper(registry) {
            Some(helper) => helper_get(&helper, registry),
            None => Ok(None),
        }
    }

    /// Keeps `creds` for `registry`: in its helper when one is configured,
    /// else base64 in `auths`, in a file only the user can read.
    pub fn store(&mut self, registry: &str, creds: &Credentials) -> Result<(), RegistryError> {
        let key = keys_for(registry).remove(0);
        if let Some(helper) = self.helper(registry) {
            let input =
                json!({ "ServerURL": key, "Username": creds.username, "Secret": creds.secret });
            helper_run(&helper, "store", input.to_string().as_bytes())?;
            self.auths().insert(key, json!({}));
        } else {
            let auth = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", creds.username, creds.secret));
            self.auths().insert(key, json!({ "auth": auth }));
        }
        self.save()
    }

    /// Forgets the credentials for `registry`; false when there were none.
    pub fn erase(&mut self, registry: &str) -> Result<bool, RegistryError> {
        let mut found = false;
        for key in keys_for(registry) {
            found |= self.auths().remove(&key).is_some();
        }
        if let Some(helper) = self.helper(registry) {
            found |= helper_run(&helper, "erase", keys_for(registry)[0].as_bytes()).is_ok();
        }
        if found {
            self.save()?;
        }
        Ok(found)
    }

    fn auths(&mut self) -> &mut Map<String, Value> {
        if !self.value.is_object() {
            self.value = json!({});
        }
        let root = self.value.as_object_mut().expect("an object");
        let auths = root.entry("auths").or_insert_with(|| json!({}));
        if !auths.is_object() {
            *auths = json!({});
        }
        auths.as_object_mut().expect("an object")
    }

    fn save(&self) -> Result<(), RegistryError> {
        use std::os::unix::fs::OpenOptionsExt;
        let fail = |e: std::io::Error| {
            RegistryError::Credentials(format!("writing {}: {e}", self.path.display()))
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let tmp = self.path.with_extension("json.kiln-tmp");
        let bytes = serde_json::to_vec_pretty(&self.value).unwrap_or_default();
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(fail)?;
        file.write_all(&bytes)
            .and_then(|_| file.sync_all())
            .map_err(fail)?;
        std::fs::rename(&tmp, &self.path).map_err(fail)
    }
}

fn helper_run(helper: &str, verb: &str, input: &[u8]) -> Result<Vec<u8>, RegistryError> {
    let program = format!("docker-credential-{helper}");
    let mut child = Command::new(&program)
        .arg(verb)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| RegistryError::Credentials(format!("running {program}: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input);
    }
    let out = child
        .wait_with_output()
        .map_err(|e| RegistryError::Credentials(format!("running {program}: {e}")))?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stdout).trim().to_string()
            + String::from_utf8_lossy(&out.stderr).trim();
        return Err(RegistryError::Credentials(format!(
            "{program} {verb}: {said}"
        )));
    }
    Ok(out.stdout)
}

fn helper_get(helper: &str, registry: &str) -> Result<Option<Credentials>, RegistryError> {
    for key in keys_for(registry) {
        match helper_run(helper, "get", key.as_bytes()) {
            Ok(out) => {
                let v: Value = serde_json::from_slice(&out).map_err(|e| {
                    RegistryError::Credentials(format!(
                        "docker-credential-{helper} get: not JSON: {e}"
                    ))
                })?;
                return Ok(Some(Credentials {
                    username: v["Username"].as_str().unwrap_or("").to_string(),
                    secret: v["Secret"].as_str().unwrap_or("").to_string(),
                }));
            }
            Err(RegistryError::Credentials(m)) if m.contains("not found") => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// A `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `Basic realm=...`: send the user and password.
    Basic,
    /// `Bearer realm=...,service=...,scope=...`: get a token from `realm`.
    Bearer {
        /// The token endpoint.
        realm: String,
        /// The service to ask a token for.
        service: Option<String>,
        /// The scope the registry asked for.
        scope: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` header value.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let (scheme, rest) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    let mut params = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        params.push((key.trim().to_ascii_lowercase(), value));
    }
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => Some(Challenge::Bearer {
            realm: get("realm")?,
            service: get("service"),
            scope: get("scope"),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/debian:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/debian:pull".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="kiln""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate"), None);
    }

    #[test]
    fn config_round_trip_keeps_other_fields() {
        let dir = std::env::temp_dir().join(format!("kiln-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.json"), r#"{"psFormat":"x","auths":{}}"#).unwrap();
        let mut c = DockerConfig::load(&dir).unwrap();
        let creds = Credentials {
            username: "u".into(),
            secret: "p:w".into(),
        };
        c.store("127.0.0.1:5000", &creds).unwrap();
        let c = DockerConfig::load(&dir).unwrap();
        assert_eq!(c.credentials("127.0.0.1:5000").unwrap(), Some(creds));
        assert_eq!(c.value["psFormat"], "x");
        assert_eq!(c.value["auths"]["127.0.0.1:5000"]["auth"], "dTpwOnc=");
        let mut c = c;
        assert!(c.erase("127.0.0.1:5000").unwrap());
        assert_eq!(
            DockerConfig::load(&dir)
                .unwrap()
                .credentials("127.0.0.1:5000")
                .unwrap(),
            None
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
