//! Docker's container options whose meaning the CLI (`kiln run`) and the
//! Docker API (`POST /containers/create`) share: one parser each, with
//! docker's units and messages, so that the two ways in cannot differ.

/// Docker's RAMInBytes: a number with an optional binary unit (`b`, `k`,
/// `m`, `g`, with or without a trailing `b`; 1k = 1024).
pub fn parse_ram(text: &str) -> Result<u64, String> {
    let t = text.trim().to_ascii_lowercase();
    let bad = || format!("invalid memory {text:?}: use a number with b, k, m or g");
    let (num, scale) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => {
            let scale: u64 = match &t[i..] {
                "b" => 1,
                "k" | "kb" => 1 << 10,
                "m" | "mb" => 1 << 20,
                "g" | "gb" => 1 << 30,
                _ => return Err(bad()),
            };
            (&t[..i], scale)
        }
        None => (t.as_str(), 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(bad)
}

/// The log drivers there are: kiln's log keeps what a container prints
/// beside it, as docker's json-file (and local) do.
const LOG_DRIVERS: [&str; 2] = ["json-file", "local"];

/// A container's log: its rotation, and the options as given (inspect
/// shows them as docker does).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// `max-size`: bytes per file.
    pub max_size: Option<u64>,
    /// `max-file`: files kept.
    pub max_files: Option<usize>,
    /// The options, as written.
    pub given: std::collections::BTreeMap<String, String>,
}

/// A log driver (`--log-driver`, `HostConfig.LogConfig.Type`; empty is
/// the default) and its options (`--log-opt`, `LogConfig.Config`):
/// `max-size=SIZE`, `max-file=N`. An unknown driver or option is refused
/// with docker's words.
pub fn log_options<'a>(
    driver: &str,
    opts: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<LogOptions, String> {
    if !driver.is_empty() && !LOG_DRIVERS.contains(&driver) {
        return Err(format!("logger: no log driver named '{driver}' is registered"));
    }
    let mut out = LogOptions::default();
    for (key, value) in opts {
        match key {
            "max-size" => out.max_size = Some(parse_ram(value)?),
            "max-file" => {
                out.max_files = Some(value.parse::<usize>().ok().filter(|&n| n > 0).ok_or_else(
                    || format!("invalid value for max-file: {value:?}: a positive number"),
                )?);
            }
            _ => {
                return Err(format!(
                    "unknown log opt '{key}' for json-file log driver (kiln's log takes max-size and max-file)"
                ));
            }
        }
        out.given.insert(key.to_string(), value.to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_units_and_words() {
        assert_eq!(parse_ram("64m"), Ok(64 << 20));
        assert_eq!(parse_ram("1024"), Ok(1024));
        assert!(parse_ram("12x").is_err());
        let l = log_options("", [("max-file", "100"), ("max-size", "1k")]).unwrap();
        assert_eq!((l.max_size, l.max_files), (Some(1024), Some(100)));
        assert_eq!(l.given.get("max-file").map(String::as_str), Some("100"));
        assert_eq!(
            log_options("asdf", []).unwrap_err(),
            "logger: no log driver named 'asdf' is registered"
        );
        assert!(log_options("json-file", [("max-file", "0")]).is_err());
        assert!(log_options("json-file", [("compress", "true")]).is_err());
    }
}
