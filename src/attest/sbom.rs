//! An SPDX 2.3 SBOM of an image, from the package databases it ships:
//! dpkg's status, apk's installed, rpm's `rpmdb.sqlite`, Python's
//! `*.dist-info/METADATA`, npm's
//! `package-lock.json` and Cargo's `Cargo.lock`. One scanner, no network:
//! the layers' snapshots are read as the image's merged filesystem (an
//! upper layer's file or whiteout hides a lower one), every file opened
//! inside its snapshot's root.

use crate::image::{Image, ImageError};
use crate::sandbox::fs::Root;
use crate::store::{Digest, Store};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

/// The predicate type written (BuildKit's for SPDX).
pub const PREDICATE: &str = "https://spdx.dev/Document";

/// A package found in the image.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Package {
    /// Which database: `deb`, `apk`, `pypi`, `npm`, `cargo`.
    pub kind: &'static str,
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Its license as recorded, if it is.
    pub license: Option<String>,
    /// The file it was found in (`/var/lib/dpkg/status`).
    pub source: String,
}

/// Database files larger than this are not read (a status of 100,000
/// packages is under 64 MiB).
const MAX_DB: u64 = 64 << 20;

/// Every package of `image`'s databases, sorted.
pub fn scan(store: &Store, image: &Image) -> Result<Vec<Package>, ImageError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let snapshots = image.snapshots(store)?;
    let mut found: BTreeMap<String, usize> = BTreeMap::new();
    let mut hidden = Hidden::default();
    // Top layer first: the first sight of a path is the one the image has.
    for (i, snapshot) in snapshots.iter().enumerate().rev() {
        let root = Root::open(snapshot).map_err(|source| ImageError::Read {
            what: format!("snapshot {}", snapshot.display()),
            source,
        })?;
        // What this layer hides is hidden from the layers below it only.
        let mut below = Hidden::default();
        let mut todo = vec![String::new()];
        while let Some(dir) = todo.pop() {
            if hidden.hides(&dir) || matches!(dir.as_str(), "/proc" | "/sys" | "/dev") {
                continue;
            }
            let Ok(names) = root.read_dir(if dir.is_empty() { "/" } else { &dir }) else {
                continue;
            };
            for name in names {
                let path = format!("{dir}/{}", name.to_string_lossy());
                let Ok(meta) = root.lstat(&path) else {
                    continue;
                };
                if meta.is_dir() {
                    // An opaque directory (overlayfs' xattr, as kiln's
                    // snapshots mark one) hides what lower layers had in it.
                    if is_opaque(&root, &path) {
                        below.opaque.insert(path.clone());
                    }
                    todo.push(path);
                    continue;
                }
                // A whiteout (char 0:0) removes the path below; any other
                // non-directory replaces it, a lower directory included.
                below.gone.insert(path.clone());
                if meta.file_type().is_char_device() && meta.rdev() == 0 {
                    continue;
                }
                if meta.is_file() && wanted(&path) && !hidden.hides(&path) {
                    found.entry(path).or_insert(i);
                }
            }
        }
        hidden.gone.extend(below.gone);
        hidden.opaque.extend(below.opaque);
    }
    let mut packages = Vec::new();
    for (path, layer) in found {
        let root = Root::open(&snapshots[layer]).map_err(|source| ImageError::Read {
            what: format!("snapshot {}", snapshots[layer].display()),
            source,
        })?;
        if path.ends_with("/rpmdb.sqlite") {
            packages.extend(rpm_packages(store, &root, &path));
            continue;
        }
        let mut text = String::new();
        let read = root
            .open_regular(&path, false)
            .and_then(|f| f.take(MAX_DB).read_to_string(&mut text));
        if read.is_err() {
            continue;
        }
        packages.extend(parse(&path, &text));
    }
    packages.sort();
    packages.dedup();
    Ok(packages)
}

/// Whether the directory `path` of a snapshot is marked opaque.
fn is_opaque(root: &Root, path: &str) -> bool {
    use xattr::FileExt;
    let Ok(dir) = root.open_read_nofollow(path) else {
        return false;
    };
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|name| {
            dir.get_xattr(name)
                .ok()
                .flatten()
                .is_some_and(|v| v == b"y")
        })
}

/// What upper layers hide from lower ones.
#[derive(Default)]
struct Hidden {
    /// Paths removed or replaced by a non-directory: they and all below.
    gone: BTreeSet<String>,
    /// Opaque directories: what is below them.
    opaque: BTreeSet<String>,
}

impl Hidden {
    /// Whether `path` of a lower layer is hidden: it or one of its
    /// ancestors is gone, or one of its ancestors is opaque.
    fn hides(&self, path: &str) -> bool {
        if path.is_empty() {
            return false;
        }
        let mut at = 0;
        while let Some(next) = path[at + 1..].find('/').map(|n| n + at + 1) {
            let ancestor = &path[..next];
            if self.gone.contains(ancestor) || self.opaque.contains(ancestor) {
                return true;
            }
            at = next;
        }
        self.gone.contains(path)
    }
}

/// Whether a file is a package database the scanner reads.
fn wanted(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or_default();
    let parent = path.rsplit('/').nth(1).unwrap_or_default();
    match name {
        "status" => path == "/var/lib/dpkg/status",
        "installed" => path == "/lib/apk/db/installed",
        "METADATA" => parent.ends_with(".dist-info"),
        // Locks of the project the image ships, not of its dependencies'
        // sources (a registry checkout holds thousands).
        "package-lock.json" => !path.contains("/node_modules/"),
        "Cargo.lock" => !path.contains("/registry/src/") && !path.contains("/git/checkouts/"),
        // rpm 4.16+'s database (Fedora 33+, RHEL 9): where rpm keeps it.
        "rpmdb.sqlite" => {
            path == "/var/lib/rpm/rpmdb.sqlite" || path == "/usr/lib/sysimage/rpm/rpmdb.sqlite"
        }
        _ => false,
    }
}

/// The packages one database file lists.
fn parse(path: &str, text: &str) -> Vec<Package> {
    let name = path.rsplit('/').next().unwrap_or_default();
    let make = |kind, name: &str, version: &str, license: Option<&str>| Package {
        kind,
        name: name.to_string(),
        version: version.to_string(),
        license: license.filter(|l| !l.is_empty()).map(str::to_string),
        source: path.to_string(),
    };
    match name {
        "status" => paragraphs(text)
            .filter(|p| {
                // What `dpkg-query -W` lists: every package dpkg knows but
                // those purged.
                p.get("Status")
                    .is_some_and(|s| !s.ends_with("not-installed"))
            })
            .filter_map(|p| {
                let version = p.get("Version")?;
                Some(make("deb", p.get("Package")?, version, None))
            })
            .collect(),
        "installed" => paragraphs(text)
            .filter_map(|p| {
                Some(make(
                    "apk",
                    p.get("P")?,
                    p.get("V")?,
                    p.get("L").map(String::as_str),
                ))
            })
            .collect(),
        "METADATA" => {
            // Headers end at the first blank line (the description follows).
            let head = text.split("\n\n").next().unwrap_or_default();
            let field = |k: &str| {
                head.lines()
                    .find_map(|l| l.strip_prefix(k)?.strip_prefix(": "))
            };
            match (field("Name"), field("Version")) {
                (Some(n), Some(v)) => vec![make(
                    "pypi",
                    n,
                    v,
                    field("License-Expression").or(field("License")),
                )],
                _ => Vec::new(),
            }
        }
        "package-lock.json" => {
            let Ok(lock) = serde_json::from_str::<Value>(text) else {
                return Vec::new();
            };
            let mut out = Vec::new();
            // Lockfile v2/v3: "packages" keyed by install path; v1:
            // "dependencies" keyed by name.
            if let Some(packages) = lock["packages"].as_object() {
                for (key, p) in packages {
                    let Some(name) = key
                        .rsplit("node_modules/")
                        .next()
                        .filter(|_| !key.is_empty())
                    else {
                        continue;
                    };
                    if let Some(v) = p["version"].as_str() {
                        out.push(make("npm", name, v, p["license"].as_str()));
                    }
                }
            } else if let Some(deps) = lock["dependencies"].as_object() {
                for (name, p) in deps {
                    if let Some(v) = p["version"].as_str() {
                        out.push(make("npm", name, v, None));
                    }
                }
            }
            out
        }
        "Cargo.lock" => {
            let Ok(lock) = text.parse::<toml::Table>() else {
                return Vec::new();
            };
            lock.get("package")
                .and_then(|p| p.as_array())
                .into_iter()
                .flatten()
                .filter_map(|p| {
                    Some(make(
                        "cargo",
                        p.get("name")?.as_str()?,
                        p.get("version")?.as_str()?,
                        None,
                    ))
                })
                .collect()
        }
        _ => Vec::new(),
    }
}

/// The packages of an rpm database (`rpmdb.sqlite`): copied out of the
/// snapshot by descriptor into the store's private tmp (SQLite opens by
/// path), opened read-only and immutable, each `Packages` row's header
/// read for its name, version-release, license.
fn rpm_packages(store: &Store, root: &Root, path: &str) -> Vec<Package> {
    let copy = store.temp_path("rpmdb");
    let copied = root.open_regular(path, false).and_then(|f| {
        let mut out = std::fs::File::create(&copy)?;
        std::io::copy(&mut f.take(MAX_DB), &mut out)
    });
    let mut out = Vec::new();
    if copied.is_ok()
        && let Ok(db) = rusqlite::Connection::open_with_flags(
            format!("file:{}?immutable=1", copy.display()),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI,
        )
        && let Ok(mut rows) = db.prepare("SELECT blob FROM Packages")
        && let Ok(blobs) = rows.query_map([], |r| r.get::<_, Vec<u8>>(0))
    {
        for header in blobs.flatten() {
            let Some(h) = RpmHeader::parse(&header) else {
                continue;
            };
            let (Some(name), Some(version)) = (h.string(1000), h.string(1001)) else {
                continue;
            };
            // gpg-pubkey entries are keys rpm imported, not packages.
            if name == "gpg-pubkey" {
                continue;
            }
            let version = match h.string(1002) {
                Some(release) => format!("{version}-{release}"),
                None => version,
            };
            out.push(Package {
                kind: "rpm",
                name,
                version,
                license: h.string(1014),
                source: path.to_string(),
            });
        }
    }
    let _ = std::fs::remove_file(&copy);
    out
}

/// An rpm header as rpm's database stores it: the index count and data
/// size (big-endian u32s), the index entries (tag, type, offset, count),
/// then the data.
struct RpmHeader<'a> {
    entries: Vec<(u32, u32, u32)>,
    data: &'a [u8],
}

impl<'a> RpmHeader<'a> {
    fn parse(blob: &'a [u8]) -> Option<RpmHeader<'a>> {
        let word = |at: usize| -> Option<u32> {
            Some(u32::from_be_bytes(blob.get(at..at + 4)?.try_into().ok()?))
        };
        let (count, size) = (word(0)? as usize, word(4)? as usize);
        let start = 8usize.checked_add(count.checked_mul(16)?)?;
        let data = blob.get(start..start.checked_add(size)?)?;
        let entries = (0..count)
            .map(|i| Some((word(8 + i * 16)?, word(12 + i * 16)?, word(16 + i * 16)?)))
            .collect::<Option<Vec<_>>>()?;
        Some(RpmHeader { entries, data })
    }

    /// Tag `tag`'s string (STRING, or the first of an I18NSTRING).
    fn string(&self, tag: u32) -> Option<String> {
        let &(_, kind, offset) = self.entries.iter().find(|(t, _, _)| *t == tag)?;
        if kind != 6 && kind != 9 {
            return None;
        }
        let rest = self.data.get(offset as usize..)?;
        let end = rest.iter().position(|&b| b == 0)?;
        String::from_utf8(rest[..end].to_vec()).ok()
    }
}

/// The paragraphs of a dpkg/apk database: `Key: value` lines (dpkg's
/// continuation lines start with a space and are skipped), blank-line
/// separated.
fn paragraphs(text: &str) -> impl Iterator<Item = BTreeMap<String, String>> + '_ {
    text.split("\n\n").map(|p| {
        p.lines()
            .filter(|l| !l.starts_with([' ', '\t']))
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .collect()
    })
}

/// A license as SPDX takes it: a plain identifier expression, else
/// NOASSERTION (free text such as "MIT License" is not an expression).
fn spdx_license(license: Option<&str>) -> String {
    let Some(l) = license else {
        return "NOASSERTION".into();
    };
    // Identifiers joined by AND, OR or WITH: `MIT`, `GPL-2.0-only OR MIT`.
    let words: Vec<&str> = l.split(' ').collect();
    let ok = words.len() % 2 == 1
        && words.iter().enumerate().all(|(i, w)| match i % 2 {
            1 => matches!(*w, "AND" | "OR" | "WITH"),
            _ => {
                let w = w.trim_matches(['(', ')']);
                !w.is_empty()
                    && !matches!(w, "AND" | "OR" | "WITH")
                    && w.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-.+".contains(&b))
            }
        });
    if ok {
        l.to_string()
    } else {
        "NOASSERTION".into()
    }
}

/// The package URL of a package (purl).
fn purl(p: &Package, arch: &str) -> String {
    match p.kind {
        "deb" => format!("pkg:deb/debian/{}@{}?arch={arch}", p.name, p.version),
        "apk" => format!("pkg:apk/alpine/{}@{}?arch={arch}", p.name, p.version),
        "rpm" => format!("pkg:rpm/{}@{}?arch={arch}", p.name, p.version),
        kind => format!("pkg:{kind}/{}@{}", p.name, p.version),
    }
}

/// The SPDX 2.3 document of `packages` found in `image` (named `name`).
pub fn document(image: &Image, name: &str, packages: &[Package], created: &str) -> Value {
    let arch = &image.config.architecture;
    let packages_json: Vec<Value> = packages
        .iter()
        .map(|p| {
            let id = Digest::of(format!("{}/{}@{}", p.kind, p.name, p.version).as_bytes());
            let mut v = json!({
                "name": p.name,
                "SPDXID": format!("SPDXRef-Package-{}-{}", p.kind, &id.hex()[..16]),
                "versionInfo": p.version,
                "downloadLocation": "NOASSERTION",
                "filesAnalyzed": false,
                "licenseConcluded": "NOASSERTION",
                "licenseDeclared": spdx_license(p.license.as_deref()),
                "sourceInfo": format!("found in {}", p.source),
                "externalRefs": [{
                    "referenceCategory": "PACKAGE-MANAGER",
                    "referenceType": "purl",
                    "referenceLocator": purl(p, arch),
                }],
            });
            if let Some(l) = &p.license
                && spdx_license(Some(l)) == "NOASSERTION"
            {
                v["licenseComments"] = Value::String(format!("recorded as: {l}"));
            }
            v
        })
        .collect();
    let relationships: Vec<Value> = packages_json
        .iter()
        .map(|p| {
            json!({
                "spdxElementId": "SPDXRef-DOCUMENT",
                "relationshipType": "DESCRIBES",
                "relatedSpdxElement": p["SPDXID"],
            })
        })
        .collect();
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("sbom-{name}"),
        "documentNamespace": format!("https://kiln.invalid/spdx/{}", image.manifest_digest.hex()),
        "creationInfo": {
            "created": created,
            "creators": [format!("Tool: kiln-{}", env!("CARGO_PKG_VERSION"))],
        },
        "packages": packages_json,
        "relationships": relationships,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_database_is_read_as_its_tool_writes_it() {
        let dpkg = "Package: a\nStatus: install ok installed\nVersion: 1.0-1\nDescription: x\n long text\n\nPackage: gone\nStatus: purge ok not-installed\n\nPackage: b\nStatus: deinstall ok config-files\nVersion: 2\n";
        let got: Vec<_> = parse("/var/lib/dpkg/status", dpkg)
            .into_iter()
            .map(|p| (p.name, p.version))
            .collect();
        assert_eq!(
            got,
            [("a".into(), "1.0-1".into()), ("b".into(), "2".into())]
        );
        let apk = "C:Q1x\nP:musl\nV:1.2.4-r2\nL:MIT\n\nP:busybox\nV:1.36\nL:GPL-2.0-only\n";
        let got = parse("/lib/apk/db/installed", apk);
        assert_eq!(got[0].license.as_deref(), Some("MIT"));
        assert_eq!(got[1].name, "busybox");
        let meta = "Metadata-Version: 2.1\nName: requests\nVersion: 2.31.0\nLicense: Apache 2.0\n\nName: not-a-header\n";
        let got = parse(
            "/usr/lib/python3/dist-packages/requests-2.31.0.dist-info/METADATA",
            meta,
        );
        assert_eq!((got.len(), got[0].version.as_str()), (1, "2.31.0"));
        assert_eq!(spdx_license(got[0].license.as_deref()), "NOASSERTION");
        assert_eq!(
            spdx_license(Some("GPL-2.0-only OR MIT")),
            "GPL-2.0-only OR MIT"
        );
        assert_eq!(spdx_license(Some("MIT OR")), "NOASSERTION");
        let npm = r#"{"lockfileVersion":3,"packages":{"":{"name":"app"},"node_modules/left-pad":{"version":"1.3.0","license":"WTFPL"},"node_modules/a/node_modules/b":{"version":"2.0.0"}}}"#;
        let got: Vec<_> = parse("/app/package-lock.json", npm)
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(got, ["left-pad", "b"], "in the lock's order");
        let cargo = "version = 3\n\n[[package]]\nname = \"kiln\"\nversion = \"0.1.0\"\n\n[[package]]\nname = \"tar\"\nversion = \"0.4.40\"\nsource = \"registry+x\"\n";
        assert_eq!(parse("/src/Cargo.lock", cargo).len(), 2);
        assert!(wanted("/var/lib/dpkg/status") && !wanted("/etc/status"));
        assert!(!wanted("/app/node_modules/x/package-lock.json"));
    }

    #[test]
    fn an_rpm_header_is_read_and_a_broken_one_is_none() {
        // Two entries: NAME (STRING at 0) and LICENSE (I18NSTRING at 4).
        let mut blob = Vec::new();
        for w in [2u32, 8, 1000, 6, 0, 1, 1014, 9, 4, 1] {
            blob.extend(w.to_be_bytes());
        }
        blob.extend(b"foo\0MIT\0");
        let h = RpmHeader::parse(&blob).unwrap();
        assert_eq!(h.string(1000).as_deref(), Some("foo"));
        assert_eq!(h.string(1014).as_deref(), Some("MIT"));
        assert_eq!(h.string(1001), None);
        assert!(RpmHeader::parse(&blob[..20]).is_none(), "entries cut short");
        assert!(
            RpmHeader::parse(&blob[..blob.len() - 1]).is_none(),
            "data cut short"
        );
        let mut huge = blob.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(RpmHeader::parse(&huge).is_none(), "a count past the blob");
    }

    #[test]
    fn whiteouts_and_opaque_directories_hide_what_is_below() {
        let hidden = Hidden {
            gone: ["/a/b".to_string()].into(),
            opaque: ["/c".to_string()].into(),
        };
        assert!(hidden.hides("/a/b") && hidden.hides("/a/b/x"));
        assert!(!hidden.hides("/a/bc") && !hidden.hides("/a"));
        assert!(hidden.hides("/c/x") && !hidden.hides("/c"));
        assert!(!hidden.hides(""), "the root");
    }
}
