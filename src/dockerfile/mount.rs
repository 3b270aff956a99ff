//! `RUN --mount=...` options, as BuildKit reads them: CSV fields
//! `key=value` (or a bare boolean key), `type` one of bind, cache, tmpfs,
//! secret, ssh (bind when absent).

use serde::Serialize;

/// What kind of mount.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    /// A read-only (by default) view of the context, a stage or an image.
    Bind,
    /// A persistent cache directory shared between builds.
    Cache,
    /// An empty tmpfs.
    Tmpfs,
    /// A secret file (or env variable) that never reaches a layer.
    Secret,
    /// The SSH agent socket.
    Ssh,
}

/// How concurrent builds share a cache mount.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sharing {
    /// Everyone writes the same directory (default).
    Shared,
    /// Each concurrent user gets its own copy.
    Private,
    /// One user at a time.
    Locked,
}

/// One parsed `--mount`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Mount {
    /// Its type.
    #[serde(rename = "type")]
    pub kind: MountType,
    /// Where it appears in the container (defaulted for secret and ssh).
    pub target: Option<String>,
    /// Path inside `from` (or the context) to mount.
    pub source: Option<String>,
    /// Stage or image to mount from.
    pub from: Option<String>,
    /// Mounted read-only.
    pub read_only: bool,
    /// Cache, secret or ssh id.
    pub id: Option<String>,
    /// Cache sharing mode.
    pub sharing: Sharing,
    /// File mode (octal in the Dockerfile).
    pub mode: Option<u32>,
    /// Owner uid.
    pub uid: Option<u32>,
    /// Owner gid.
    pub gid: Option<u32>,
    /// tmpfs size in bytes.
    pub size: Option<u64>,
    /// Fail when the secret or ssh socket is not given.
    pub required: bool,
    /// Expose a secret as this environment variable.
    pub env: Option<String>,
    /// The flag's text, when a field of it needs ARG/ENV expansion before
    /// it can be read (`type=$T`): parsed again, expanded, when the step
    /// runs, as BuildKit's RunCommand.Expand does.
    #[serde(skip)]
    pub deferred: Option<String>,
}

/// The message for `from=` with a variable (BuildKit refuses it as parsed).
pub const FROM_EXPANSION: &str =
    "'from' doesn't support variable expansion, define alias stage instead";

/// Parses the value of one `--mount` flag.
pub fn parse(value: &str) -> Result<Mount, String> {
    let fields = split_csv(value)?;
    let mut m = Mount {
        kind: MountType::Bind,
        target: None,
        source: None,
        from: None,
        read_only: false,
        id: None,
        sharing: Sharing::Shared,
        mode: None,
        uid: None,
        gid: None,
        size: None,
        required: false,
        env: None,
        deferred: None,
    };
    // The type decides defaults, so it is read first wherever it is written.
    for field in &fields {
        if let Some(("type", t)) = field.split_once('=').map(|(k, v)| (k.trim(), v)) {
            m.kind = match t.to_ascii_lowercase().as_str() {
                "bind" => MountType::Bind,
                "cache" => MountType::Cache,
                "tmpfs" => MountType::Tmpfs,
                "secret" => MountType::Secret,
                "ssh" => MountType::Ssh,
                other => {
                    // BuildKit's suggest.WrapError: a near miss is named.
                    let types = ["bind", "cache", "tmpfs", "secret", "ssh"];
                    return Err(match super::flags::suggest(other, &types) {
                        Some(s) => format!("unsupported mount type {other:?} (did you mean {s}?)"),
                        None => format!(
                            "unsupported mount type {other:?}: use bind, cache, tmpfs, secret or ssh"
                        ),
                    });
                }
            };
        }
    }
    let mut read_write = m.kind != MountType::Bind;
    for field in &fields {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.to_string())),
            None => (field.trim().to_ascii_lowercase(), None),
        };
        let bool_value = |v: &Option<String>| -> Result<bool, String> {
            match v.as_deref().map(str::to_ascii_lowercase).as_deref() {
                None | Some("true") => Ok(true),
                Some("false") => Ok(false),
                Some(other) => Err(format!(
                    "invalid value for {key}: {other:?} (use true or false)"
                )),
            }
        };
        match key.as_str() {
            "readonly" | "ro" => read_write = !bool_value(&value)?,
            "readwrite" | "rw" => read_write = bool_value(&value)?,
            "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => {
                m.required = bool_value(&value)?
            }
            _ => {
                let Some(value) = value else {
                    return Err(format!("invalid field {field:?}: must be a key=value pair"));
                };
                match key.as_str() {
                    "type" => {}
                    "target" | "dst" | "destination" => m.target = Some(value),
                    "source" | "src" if m.kind != MountType::Tmpfs => m.source = Some(value),
                    "from" if matches!(m.kind, MountType::Bind | MountType::Cache) => {
                        if value.contains('$') {
                            return Err(FROM_EXPANSION.into());
                        }
                        m.from = Some(value)
                    }
                    "id" if matches!(
                        m.kind,
                        MountType::Cache | MountType::Secret | MountType::Ssh
                    ) =>
                    {
                        m.id = Some(value)
                    }
                    "sharing" if m.kind == MountType::Cache => {
                        m.sharing = match value.to_ascii_lowercase().as_str() {
                            "shared" => Sharing::Shared,
                            "private" => Sharing::Private,
                            "locked" => Sharing::Locked,
                            _ => {
                                return Err(format!(
                                    "unsupported sharing value {value:?}: use shared, private or locked"
                                ));
                            }
                        }
                    }
                    "mode" if m.kind != MountType::Bind && m.kind != MountType::Tmpfs => {
                        m.mode = Some(u32::from_str_radix(&value, 8).map_err(|_| {
                            format!("invalid mode {value:?}: must be octal, such as 0755")
                        })?);
                    }
                    "uid" | "gid" if m.kind != MountType::Bind && m.kind != MountType::Tmpfs => {
                        let id = value
                            .parse()
                            .map_err(|_| format!("invalid {key} {value:?}: must be a number"))?;
                        if key == "uid" {
                            m.uid = Some(id)
                        } else {
                            m.gid = Some(id)
                        }
                    }
                    "size" if m.kind == MountType::Tmpfs => {
                        m.size = Some(crate::units::ram_in_bytes(&value)?)
                    }
                    "env" if m.kind == MountType::Secret => m.env = Some(value),
                    _ => {
                        let keys = [
                            "type",
                            "target",
                            "dst",
                            "destination",
                            "source",
                            "src",
                            "from",
                            "id",
                            "sharing",
                            "mode",
                            "uid",
                            "gid",
                            "size",
                            "env",
                            "readonly",
                            "ro",
                            "readwrite",
                            "rw",
                            "required",
                        ];
                        // A key of another mount type is no typo.
                        let near = super::flags::suggest(&key, &keys)
                            .filter(|s| *s != key)
                            .map(|s| format!(" (did you mean {s}?)"))
                            .unwrap_or_default();
                        return Err(format!(
                            "unexpected key '{key}' in '{field}' for a {} mount{near}",
                            type_name(m.kind)
                        ));
                    }
                }
            }
        }
    }
    m.read_only = !read_write;
    match m.kind {
        MountType::Bind | MountType::Cache | MountType::Tmpfs if m.target.is_none() => {
            return Err(format!(
                "a {} mount needs a target: add target=/path",
                type_name(m.kind)
            ));
        }
        MountType::Secret if m.id.is_none() && m.target.is_none() && m.env.is_none() => {
            return Err("a secret mount needs an id or a target: add id=NAME".into());
        }
        _ => {}
    }
    if m.kind == MountType::Cache && m.id.is_none() {
        m.id = m.target.clone();
    }
    if m.kind == MountType::Secret && m.id.is_none() {
        m.id = m
            .target
            .as_deref()
            .and_then(|t| t.rsplit('/').next())
            .map(str::to_string);
    }
    if m.kind == MountType::Secret && m.target.is_none() && m.env.is_none() {
        m.target = m.id.as_ref().map(|id| format!("/run/secrets/{id}"));
    }
    if m.kind == MountType::Ssh {
        m.id.get_or_insert_with(|| "default".into());
        m.target
            .get_or_insert_with(|| "/run/buildkit/ssh_agent.0".into());
    }
    Ok(m)
}

fn type_name(kind: MountType) -> &'static str {
    match kind {
        MountType::Bind => "bind",
        MountType::Cache => "cache",
        MountType::Tmpfs => "tmpfs",
        MountType::Secret => "secret",
        MountType::Ssh => "ssh",
    }
}

/// Splits one CSV record as Go's encoding/csv does (double quotes group,
/// `""` inside quotes is a quote).
fn split_csv(value: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = value.chars().peekable();
    let mut quoted = false;
    let mut at_field_start = true;
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            '"' if quoted => quoted = false,
            '"' if at_field_start || field.ends_with('=') => quoted = true,
            ',' if !quoted => {
                fields.push(std::mem::take(&mut field));
                at_field_start = true;
                continue;
            }
            c => field.push(c),
        }
        at_field_start = false;
    }
    if quoted {
        return Err(format!("unterminated quote in mount options {value:?}"));
    }
    fields.push(field);
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_defaults_read_only() {
        let m = parse("target=/src,from=build,source=/out").unwrap();
        assert_eq!(m.kind, MountType::Bind);
        assert!(m.read_only);
        assert_eq!(
            (m.from.as_deref(), m.source.as_deref()),
            (Some("build"), Some("/out"))
        );
        assert!(!parse("type=bind,target=/x,rw").unwrap().read_only);
    }

    #[test]
    fn cache_secret_ssh_tmpfs() {
        let c = parse("type=cache,target=/root/.cache,sharing=locked,mode=0700,uid=10").unwrap();
        assert_eq!(
            (c.id.as_deref(), c.sharing, c.mode, c.uid),
            (Some("/root/.cache"), Sharing::Locked, Some(0o700), Some(10))
        );
        assert!(!c.read_only);
        let s = parse("type=secret,id=npmrc,required").unwrap();
        assert_eq!(
            (s.target.as_deref(), s.required),
            (Some("/run/secrets/npmrc"), true)
        );
        let s = parse("type=secret,id=tok,env=TOKEN").unwrap();
        assert_eq!((s.target, s.env.as_deref()), (None, Some("TOKEN")));
        let ssh = parse("type=ssh").unwrap();
        assert_eq!(ssh.id.as_deref(), Some("default"));
        assert_eq!(
            parse("type=tmpfs,target=/t,size=64m").unwrap().size,
            Some(64 << 20)
        );
        assert_eq!(
            parse("type=bind,\"target=/a,b\"")
                .unwrap()
                .target
                .as_deref(),
            Some("/a,b")
        );
    }

    #[test]
    fn near_misses_are_named() {
        assert_eq!(
            parse("type=tmpf,target=/x").unwrap_err(),
            "unsupported mount type \"tmpf\" (did you mean tmpfs?)"
        );
        assert_eq!(
            parse("type=cache,target=/x,sharng=locked").unwrap_err(),
            "unexpected key 'sharng' in 'sharng=locked' for a cache mount (did you mean sharing?)"
        );
    }

    #[test]
    fn rejects_bad_options() {
        assert_eq!(
            parse("type=nfs,target=/x").unwrap_err(),
            "unsupported mount type \"nfs\": use bind, cache, tmpfs, secret or ssh"
        );
        assert_eq!(
            parse("type=cache").unwrap_err(),
            "a cache mount needs a target: add target=/path"
        );
        assert_eq!(
            parse("type=cache,target=/x,sharing=all").unwrap_err(),
            "unsupported sharing value \"all\": use shared, private or locked"
        );
        assert_eq!(
            parse("type=tmpfs,target=/x,from=a").unwrap_err(),
            "unexpected key 'from' in 'from=a' for a tmpfs mount"
        );
        assert_eq!(
            parse("type=secret").unwrap_err(),
            "a secret mount needs an id or a target: add id=NAME"
        );
        assert_eq!(
            parse("type=cache,target=/x,mode=9").unwrap_err(),
            "invalid mode \"9\": must be octal, such as 0755"
        );
        assert_eq!(
            parse("target=/x,ro=maybe").unwrap_err(),
            "invalid value for ro: \"maybe\" (use true or false)"
        );
    }
}
