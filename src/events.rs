//! The store's event journal (`docker events`): what happened to its
//! containers, images, networks and volumes, appended as JSON lines to
//! `events.log` by whichever kiln process did it (there is no daemon to
//! hear them), read back and followed by `kiln events` and the API's
//! `/events`, as podman's file backend keeps them.
//!
//! Each event is one `write` on a file opened with `O_APPEND`, under the
//! journal's lock (`events.lock`): writers in several processes never
//! interleave a line, and only one of them rotates it. At 1 MiB the
//! journal is renamed to `events.log.1` (the one before is dropped), so it
//! never grows without bound; followers notice by its inode.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The journal's size when it is rotated.
const MAX_SIZE: u64 = 1 << 20;

/// What an event is about (docker's `Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A container.
    Container,
    /// An image.
    Image,
    /// A network.
    Network,
    /// A volume.
    Volume,
}

impl Kind {
    /// Docker's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Container => "container",
            Kind::Image => "image",
            Kind::Network => "network",
            Kind::Volume => "volume",
        }
    }
}

/// One thing that happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// When, in nanoseconds since the epoch.
    pub time_nano: i128,
    /// What it is about.
    #[serde(rename = "type")]
    pub kind: Kind,
    /// What happened (`create`, `start`, `die`, `tag`...).
    pub action: String,
    /// The object's id (a container's, an image's, a network's; a
    /// volume's name).
    pub id: String,
    /// Docker's `Actor.Attributes`: name, image, exitCode, labels...
    pub attributes: BTreeMap<String, String>,
}

impl Event {
    /// The event in docker's shape (`GET /events`, `docker events
    /// --format '{{json .}}'`), with the older top-level keys clients
    /// still read.
    pub fn docker_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "Type": self.kind.as_str(),
            "Action": self.action,
            "Actor": { "ID": self.id, "Attributes": self.attributes },
            "scope": "local",
            "time": self.time_nano.div_euclid(1_000_000_000),
            "timeNano": self.time_nano,
        });
        if self.kind == Kind::Container || self.kind == Kind::Image {
            v["status"] = self.action.clone().into();
            v["id"] = self.id.clone().into();
            if let Some(image) = self.attributes.get("image") {
                v["from"] = image.clone().into();
            }
        }
        v
    }
}

fn path(store_root: &Path) -> PathBuf {
    let [log, _, _] = crate::store::layout::events(store_root);
    log
}

/// The journal's rotated predecessor.
fn rotated(store_root: &Path) -> PathBuf {
    let [_, old, _] = crate::store::layout::events(store_root);
    old
}

fn now_nano() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// Appends an event to the store's journal. A journal that cannot be
/// written loses the event, never the action it tells of.
pub fn record(
    store_root: &Path,
    kind: Kind,
    action: &str,
    id: &str,
    attributes: impl IntoIterator<Item = (String, String)>,
) {
    let event = Event {
        time_nano: now_nano(),
        kind,
        action: action.to_string(),
        id: id.to_string(),
        attributes: attributes.into_iter().collect(),
    };
    let Ok(mut line) = serde_json::to_vec(&event) else {
        return;
    };
    line.push(b'\n');
    let file = path(store_root);
    // The size is looked at under the lock: two writers never both rotate
    // (the second would rename a fresh journal over the first's).
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&crate::store::layout::events(store_root)[2]);
    let _held = lock.as_ref().ok().filter(|l| l.lock().is_ok());
    if std::fs::metadata(&file).is_ok_and(|m| m.len() >= MAX_SIZE) {
        let _ = std::fs::rename(&file, rotated(store_root));
    }
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&file)
    {
        let _ = f.write_all(&line);
    }
}

/// Every event kept, oldest first.
pub fn read(store_root: &Path) -> Vec<Event> {
    [rotated(store_root), path(store_root)]
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .flat_map(|bytes| parse(&bytes))
        .collect()
}

/// Every event kept, and a follower that goes on exactly after them: no
/// event recorded between the two is lost or told twice.
pub fn read_then_follow(store_root: &Path) -> (Vec<Event>, Follow) {
    let current = path(store_root);
    let mut events = std::fs::read(rotated(store_root))
        .map(|b| parse(&b))
        .unwrap_or_default();
    // Read through one handle: its inode is the one the offset is in.
    let (bytes, ino) = match std::fs::File::open(&current) {
        Ok(mut f) => {
            let mut bytes = Vec::new();
            let _ = f.read_to_end(&mut bytes);
            let ino = f
                .metadata()
                .ok()
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m));
            (bytes, ino)
        }
        Err(_) => (Vec::new(), None),
    };
    let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    events.extend(parse(&bytes[..whole]));
    let follow = Follow {
        path: current,
        ino,
        offset: whole as u64,
        partial: Vec::new(),
    };
    (events, follow)
}

/// A time as docker's `--since` and `--until` take it, in nanoseconds
/// since the epoch: Unix seconds (`1700000000`, `1700000000.5`), RFC 3339,
/// or a duration before `now` (`10m`, `1h30m`, `45s`).
pub fn parse_time(text: &str, now: i128) -> Option<i128> {
    // Every sum and product checked: a hostile query is refused, never a
    // panic or a wrapped time.
    if let Some((secs, frac)) = text.split_once('.').or(Some((text, ""))) {
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if digits(secs) && (frac.is_empty() || digits(frac)) {
            let whole: i128 = secs.parse().ok()?;
            let nanos: i128 = match frac.is_empty() {
                true => 0,
                false => format!("{frac:0<9}")[..9].parse().ok()?,
            };
            return whole.checked_mul(1_000_000_000)?.checked_add(nanos);
        }
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return t.timestamp_nanos_opt().map(i128::from);
    }
    // A Go duration: numbers with h, m, s, ms units, summed.
    let mut total: i128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let n = rest.bytes().take_while(u8::is_ascii_digit).count();
        let value: i128 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let unit = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let nanos = match &rest[..unit] {
            "h" => 3_600_000_000_000,
            "m" => 60_000_000_000,
            "s" => 1_000_000_000,
            "ms" => 1_000_000,
            _ => return None,
        };
        rest = &rest[unit..];
        total = total.checked_add(value.checked_mul(nanos)?)?;
    }
    (!text.is_empty()).then_some(now.checked_sub(total)?)
}

/// Now, in nanoseconds since the epoch.
pub fn now() -> i128 {
    now_nano()
}

/// The journal followed from its end: the events recorded from now on,
/// across rotations.
#[derive(Debug)]
pub struct Follow {
    path: PathBuf,
    /// The inode of the file `offset` is in: another one is a rotation.
    ino: Option<u64>,
    offset: u64,
    partial: Vec<u8>,
}

fn inode(path: &Path) -> Option<u64> {
    std::fs::metadata(path)
        .ok()
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
}

/// Whole lines of `bytes` as events; a broken line is skipped.
fn parse(bytes: &[u8]) -> Vec<Event> {
    bytes
        .split(|&b| b == b'\n')
        .filter_map(|l| serde_json::from_slice::<Event>(l).ok())
        .collect()
}

impl Follow {
    /// Follows the journal of the store at `store_root` from its end.
    pub fn from_end(store_root: &Path) -> Follow {
        let path = path(store_root);
        let meta = std::fs::metadata(&path).ok();
        Follow {
            ino: meta.as_ref().map(std::os::unix::fs::MetadataExt::ino),
            offset: meta.map_or(0, |m| m.len()),
            path,
            partial: Vec::new(),
        }
    }

    /// The events recorded since the last call.
    pub fn more(&mut self) -> Vec<Event> {
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        let ino = f
            .metadata()
            .ok()
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m));
        let mut events = Vec::new();
        if self.ino.is_some() && ino != self.ino {
            // Rotated: what was written to the old file after our offset
            // is in `.1` (when it is still that file); read it first.
            let rotated = self.path.with_extension("log.1");
            if inode(&rotated) == self.ino {
                events = self.rest_of(&rotated);
            }
            self.offset = 0;
            self.partial.clear();
        }
        self.ino = ino;
        let mut bytes = Vec::new();
        if f.seek(SeekFrom::Start(self.offset)).is_err() || f.read_to_end(&mut bytes).is_err() {
            return events;
        }
        self.offset += bytes.len() as u64;
        self.partial.extend_from_slice(&bytes);
        let whole = self
            .partial
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        events.extend(parse(&self.partial[..whole]));
        self.partial.drain(..whole);
        events
    }

    /// Events in the rotated file after this follower's offset.
    fn rest_of(&self, rotated: &Path) -> Vec<Event> {
        let Ok(mut f) = std::fs::File::open(rotated) else {
            return Vec::new();
        };
        let mut bytes = Vec::new();
        if f.seek(SeekFrom::Start(self.offset)).is_err() || f.read_to_end(&mut bytes).is_err() {
            return Vec::new();
        }
        let mut all = self.partial.clone();
        all.extend_from_slice(&bytes);
        parse(&all)
    }
}

/// The filter keys [`matches`] takes.
pub const FILTERS: [&str; 8] = [
    "type",
    "event",
    "action",
    "container",
    "image",
    "network",
    "volume",
    "label",
];

/// Docker's filters on events (`type`, `event`, `container`, `image`,
/// `network`, `volume`, `label`): every key given must match one of its
/// values.
pub fn matches(e: &Event, filters: &BTreeMap<String, Vec<String>>) -> bool {
    filters.iter().all(|(key, values)| {
        values.iter().any(|v| match key.as_str() {
            "type" => e.kind.as_str() == v,
            "event" | "action" => e.action == *v || e.action.starts_with(&format!("{v}:")),
            "container" => {
                e.kind == Kind::Container
                    && (e.id.starts_with(v.as_str()) || e.attributes.get("name") == Some(v))
            }
            "image" => {
                (e.kind == Kind::Image && (e.id == *v || e.attributes.get("name") == Some(v)))
                    || e.attributes.get("image") == Some(v)
            }
            "network" => {
                e.kind == Kind::Network
                    && (e.id.starts_with(v.as_str()) || e.attributes.get("name") == Some(v))
            }
            "volume" => e.kind == Kind::Volume && e.id == *v,
            "label" => match v.split_once('=') {
                Some((k, val)) => e.attributes.get(k).is_some_and(|x| x == val),
                None => e.attributes.contains_key(v.as_str()),
            },
            _ => false,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_read_back_and_followed_across_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        record(
            root,
            Kind::Image,
            "tag",
            "sha256:aa",
            [("name".into(), "box:1".into())],
        );
        let mut follow = Follow::from_end(root);
        record(
            root,
            Kind::Container,
            "start",
            "c1",
            [("name".into(), "web".into())],
        );
        let got = follow.more();
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].action.as_str(), got[0].id.as_str()),
            ("start", "c1")
        );
        // Past the size limit, the next event starts a new file; the
        // follower still gets what was written to the old one.
        let f = std::fs::OpenOptions::new()
            .append(true)
            .open(path(root))
            .unwrap();
        f.set_len(MAX_SIZE).unwrap();
        record(root, Kind::Container, "die", "c1", []);
        let got = follow.more();
        assert_eq!(
            got.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
            ["die"]
        );
        assert!(std::fs::metadata(root.join("events.log.1")).is_ok());
        let all = read(root);
        assert_eq!(all.first().map(|e| e.action.as_str()), Some("tag"));
        assert_eq!(all.last().map(|e| e.action.as_str()), Some("die"));
    }

    #[test]
    fn times_are_read_as_docker_reads_them() {
        let now = 2_000 * 1_000_000_000;
        assert_eq!(
            parse_time("1700000000", now),
            Some(1_700_000_000_000_000_000)
        );
        assert_eq!(
            parse_time("1700000000.5", now),
            Some(1_700_000_000_500_000_000)
        );
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z", now),
            Some(1_700_000_000_000_000_000)
        );
        assert_eq!(parse_time("10m", now), Some(now - 600_000_000_000));
        assert_eq!(parse_time("1h30s", now), Some(now - 3_630_000_000_000));
        assert_eq!(parse_time("soon", now), None);
        assert_eq!(parse_time("", now), None);
        // Too large for any clock: refused, not wrapped.
        assert_eq!(parse_time(&"9".repeat(32), now), None);
        assert_eq!(parse_time(&format!("{}h", "9".repeat(30)), now), None);
    }

    #[test]
    fn filters_are_docker_s() {
        let e = Event {
            time_nano: 1,
            kind: Kind::Container,
            action: "die".into(),
            id: "abcdef".into(),
            attributes: [
                ("name".into(), "web".into()),
                ("image".into(), "box:1".into()),
            ]
            .into_iter()
            .collect(),
        };
        let f = |pairs: &[(&str, &str)]| {
            let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (k, v) in pairs {
                m.entry(k.to_string()).or_default().push(v.to_string());
            }
            matches(&e, &m)
        };
        assert!(f(&[
            ("type", "container"),
            ("event", "die"),
            ("container", "web")
        ]));
        assert!(f(&[("event", "start"), ("event", "die")]));
        assert!(f(&[("image", "box:1"), ("container", "abc")]));
        assert!(!f(&[("type", "image")]));
        assert!(!f(&[("container", "db")]));
        let v = e.docker_json();
        assert_eq!(v["Actor"]["Attributes"]["name"], "web");
        assert_eq!(
            (v["status"].as_str(), v["from"].as_str()),
            (Some("die"), Some("box:1"))
        );
    }
}
