use super::*;
use crate::sandbox::fs::{Special, is_root, make_special, make_whiteout};
use crate::store::Store;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, symlink};
use std::path::Path;

fn tar_names(tar: &[u8]) -> Vec<String> {
    let mut archive = tar::Archive::new(tar);
    archive
        .entries()
        .unwrap()
        .map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned())
        .collect()
}

fn tar_of(dir: &Path, options: Options) -> (Vec<u8>, Digest) {
    let (tar, diff_id, size) = generate(dir, Vec::new(), options).unwrap();
    assert_eq!(size as usize, tar.len());
    (tar, diff_id)
}

/// Appends an entry whose name (and link name) are written byte for byte,
/// bypassing the tar crate's own path checks, as an attacker would.
fn raw_entry(
    b: &mut tar::Builder<Vec<u8>>,
    name: &str,
    kind: tar::EntryType,
    link: &str,
    data: &[u8],
) {
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    h.set_cksum();
    b.append(&h, data).unwrap();
}

#[test]
fn round_trip_keeps_files_modes_owners_links_and_xattrs() {
    let src = tempfile::tempdir().unwrap();
    let s = src.path();
    fs::create_dir_all(s.join("etc/app")).unwrap();
    fs::write(s.join("etc/app/conf"), "key=value\n").unwrap();
    fs::set_permissions(s.join("etc/app/conf"), fs::Permissions::from_mode(0o640)).unwrap();
    fs::write(s.join("bin"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(s.join("bin"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::hard_link(s.join("bin"), s.join("bin-link")).unwrap();
    symlink("etc/app/conf", s.join("conf-link")).unwrap();
    make_special(&s.join("fifo"), Special::Fifo, 0o600, 0, 0).unwrap();
    xattr::set(s.join("etc/app/conf"), "user.kiln", b"yes").unwrap();
    if is_root() {
        std::os::unix::fs::lchown(s.join("etc/app/conf"), Some(1000), Some(1001)).unwrap();
        make_special(&s.join("null"), Special::Char, 0o666, 1, 3).unwrap();
        // A file capability (cap_net_bind_service+ep), as ping carries.
        let cap: [u8; 20] = [0, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        xattr::set(s.join("bin"), "security.capability", &cap).unwrap();
    }

    let (tar, diff_id) = tar_of(s, Options::default());
    let names = tar_names(&tar);
    let mut sorted = names.clone();
    sorted.sort();
    assert!(
        names.iter().position(|n| n == "etc/") < names.iter().position(|n| n == "etc/app/conf")
    );
    assert!(names.contains(&"bin-link".to_string()) && names.contains(&"conf-link".to_string()));

    let dst = tempfile::tempdir().unwrap();
    let d = dst.path();
    let (applied, _) = apply(tar.as_slice(), d, Mode::Flatten).unwrap();
    assert_eq!(applied, diff_id, "apply hashes the same tar");
    assert_eq!(
        fs::read_to_string(d.join("etc/app/conf")).unwrap(),
        "key=value\n"
    );
    let conf = fs::metadata(d.join("etc/app/conf")).unwrap();
    assert_eq!(conf.mode() & 0o7777, 0o640);
    assert_eq!(fs::metadata(d.join("bin")).unwrap().mode() & 0o7777, 0o4755);
    assert_eq!(
        fs::metadata(d.join("bin")).unwrap().ino(),
        fs::metadata(d.join("bin-link")).unwrap().ino()
    );
    assert_eq!(
        fs::read_link(d.join("conf-link")).unwrap(),
        Path::new("etc/app/conf")
    );
    assert!(
        fs::symlink_metadata(d.join("fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    assert_eq!(
        xattr::get(d.join("etc/app/conf"), "user.kiln")
            .unwrap()
            .as_deref(),
        Some(&b"yes"[..])
    );
    assert_eq!(
        conf.mtime(),
        fs::metadata(s.join("etc/app/conf")).unwrap().mtime()
    );
    if is_root() {
        assert_eq!((conf.uid(), conf.gid()), (1000, 1001));
        assert_eq!(
            fs::metadata(d.join("null")).unwrap().rdev(),
            fs::metadata(s.join("null")).unwrap().rdev()
        );
        assert_eq!(
            xattr::get(d.join("bin"), "security.capability").unwrap(),
            xattr::get(s.join("bin"), "security.capability").unwrap()
        );
    }
    // Generating the applied tree gives the same tar: nothing was lost.
    assert_eq!(tar_of(d, Options::default()).1, diff_id);
}

#[test]
fn generation_is_deterministic_and_clamps_mtimes() {
    let src = tempfile::tempdir().unwrap();
    for name in ["b", "a", "c/z", "c/y", "B"] {
        let p = src.path().join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, name).unwrap();
    }
    let (tar1, d1) = tar_of(src.path(), Options::default());
    let (_, d2) = tar_of(src.path(), Options::default());
    assert_eq!(d1, d2);
    assert_eq!(tar_names(&tar1), ["B", "a", "b", "c/", "c/y", "c/z"]);
    let (tar, _) = tar_of(
        src.path(),
        Options {
            mtime_clamp: Some(1000),
        },
    );
    let mut archive = tar::Archive::new(tar.as_slice());
    for e in archive.entries().unwrap() {
        assert_eq!(e.unwrap().header().mtime().unwrap(), 1000);
    }
    let (tar, _) = tar_of(
        src.path(),
        Options {
            mtime_clamp: Some(u64::MAX),
        },
    );
    let now = fs::metadata(src.path().join("a")).unwrap().mtime() as u64;
    let mut archive = tar::Archive::new(tar.as_slice());
    let first = archive.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(
        first.header().mtime().unwrap(),
        now,
        "an mtime before the clamp is kept"
    );
}

#[test]
fn overlay_whiteouts_become_wh_entries_and_back() {
    if !is_root() {
        eprintln!("skipped: creating overlay whiteouts (char 0:0) and trusted.* xattrs needs root");
        return;
    }
    let upper = tempfile::tempdir().unwrap();
    let u = upper.path();
    fs::create_dir_all(u.join("etc/opaque")).unwrap();
    fs::write(u.join("etc/opaque/new"), "n").unwrap();
    xattr::set(u.join("etc/opaque"), "trusted.overlay.opaque", b"y").unwrap();
    xattr::set(u.join("etc"), "trusted.overlay.origin", b"junk").unwrap();
    make_whiteout(&u.join("etc/gone")).unwrap();
    let (tar, _) = tar_of(u, Options::default());
    assert_eq!(
        tar_names(&tar),
        [
            "etc/",
            "etc/.wh.gone",
            "etc/opaque/",
            "etc/opaque/.wh..wh..opq",
            "etc/opaque/new"
        ]
    );
    let mut archive = tar::Archive::new(tar.as_slice());
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        if let Some(exts) = e.pax_extensions().unwrap() {
            for ext in exts {
                assert!(
                    !ext.unwrap().key().unwrap().contains("overlay"),
                    "overlay xattrs stay out of layers"
                );
            }
        }
    }

    // As an overlay lowerdir: whiteouts are back in overlay form.
    let snap = tempfile::tempdir().unwrap();
    apply(tar.as_slice(), snap.path(), Mode::Overlay).unwrap();
    let wh = fs::symlink_metadata(snap.path().join("etc/gone")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    assert_eq!(
        xattr::get(snap.path().join("etc/opaque"), "trusted.overlay.opaque")
            .unwrap()
            .as_deref(),
        Some(&b"y"[..])
    );

    // Flattened on a lower layer: whiteouts delete, opaque hides the old.
    let lower = tempfile::tempdir().unwrap();
    let l = lower.path();
    fs::create_dir_all(l.join("etc/opaque")).unwrap();
    fs::write(l.join("etc/gone"), "old").unwrap();
    fs::write(l.join("etc/kept"), "old").unwrap();
    fs::write(l.join("etc/opaque/old"), "old").unwrap();
    apply(tar.as_slice(), l, Mode::Flatten).unwrap();
    assert!(!l.join("etc/gone").exists());
    assert!(l.join("etc/kept").exists());
    assert!(!l.join("etc/opaque/old").exists());
    assert_eq!(fs::read_to_string(l.join("etc/opaque/new")).unwrap(), "n");
}

#[test]
fn compressed_layers_apply_to_the_same_diff_id() {
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("f"), "data".repeat(1000)).unwrap();
    let (tar, diff_id) = tar_of(src.path(), Options::default());
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::encode_all(tar.as_slice(), 3).unwrap();
    assert_eq!(Compression::detect(&gz), Compression::Gzip);
    assert_eq!(Compression::detect(&zst), Compression::Zstd);
    assert_eq!(Compression::detect(&tar), Compression::None);
    for blob in [&tar, &gz, &zst] {
        let dst = tempfile::tempdir().unwrap();
        assert_eq!(
            apply(blob.as_slice(), dst.path(), Mode::Flatten).unwrap().0,
            diff_id
        );
    }
}

/// Each escape attempt, as a tar made by hand.
fn malicious() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    use tar::EntryType::*;
    let mut cases = Vec::new();
    let mut make =
        |what: &'static str, expect: &'static str, f: &dyn Fn(&mut tar::Builder<Vec<u8>>)| {
            let mut b = tar::Builder::new(Vec::new());
            raw_entry(&mut b, "ok.txt", Regular, "", b"fine");
            f(&mut b);
            cases.push((what, b.into_inner().unwrap(), expect));
        };
    make("dot-dot name", "'..' leads out of the layer", &|b| {
        raw_entry(b, "../escaped", Regular, "", b"x")
    });
    make("nested dot-dot", "'..' leads out of the layer", &|b| {
        raw_entry(b, "a/../../escaped", Regular, "", b"x")
    });
    make("absolute name", "absolute names are not allowed", &|b| {
        raw_entry(b, "/tmp/escaped", Regular, "", b"x")
    });
    make(
        "write through outward symlink",
        "a symlink on its path leads out of the layer",
        &|b| {
            raw_entry(b, "up", Symlink, "../../../..", b"");
            raw_entry(b, "up/escaped", Regular, "", b"x");
        },
    );
    make(
        "write through absolute symlink",
        "points outside the layer",
        &|b| {
            raw_entry(b, "etc", Symlink, "/etc", b"");
            raw_entry(b, "etc/kiln-escaped", Regular, "", b"x");
        },
    );
    make(
        "symlink chain out",
        "a symlink on its path leads out of the layer",
        &|b| {
            raw_entry(b, "d/", Directory, "", b"");
            raw_entry(b, "d/l1", Symlink, "..", b"");
            raw_entry(b, "d/l2", Symlink, "l1/..", b"");
            raw_entry(b, "d/l2/escaped", Regular, "", b"x");
        },
    );
    make(
        "hardlink outside",
        "hardlink target: '..' leads out of the layer",
        &|b| {
            raw_entry(b, "passwd", Link, "../../../../etc/passwd", b"");
        },
    );
    make(
        "hardlink absolute",
        "hardlink target: absolute names are not allowed",
        &|b| {
            raw_entry(b, "passwd", Link, "/etc/passwd", b"");
        },
    );
    make(
        "hardlink through symlink",
        "points outside the layer",
        &|b| {
            raw_entry(b, "e", Symlink, "/etc", b"");
            raw_entry(b, "passwd", Link, "e/passwd", b"");
        },
    );
    cases
}

#[test]
fn every_escape_is_refused_and_leaves_no_snapshot() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path().join("store")).unwrap();
    for (what, tar, expect) in malicious() {
        let err = unpack_snapshot(&store, tar.as_slice(), None).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ApplyError::Escape { .. }), "{what}: {msg}");
        assert!(msg.contains(expect), "{what}: {msg}");
        assert_eq!(
            fs::read_dir(store.root().join("snapshots"))
                .unwrap()
                .count(),
            0,
            "{what}: no snapshot"
        );
        assert_eq!(
            fs::read_dir(store.root().join("tmp")).unwrap().count(),
            0,
            "{what}: no leftovers"
        );
    }
    assert!(!Path::new("/etc/kiln-escaped").exists() && !root.path().join("escaped").exists());
}

#[test]
fn symlinks_that_stay_inside_are_followed() {
    use tar::EntryType::*;
    let mut b = tar::Builder::new(Vec::new());
    raw_entry(&mut b, "real/", Directory, "", b"");
    raw_entry(&mut b, "alias", Symlink, "real", b"");
    raw_entry(&mut b, "alias/file", Regular, "", b"inside");
    raw_entry(&mut b, "real/sub/", Directory, "", b"");
    raw_entry(&mut b, "real/sub/up", Symlink, "../", b"");
    raw_entry(&mut b, "real/sub/up/file2", Regular, "", b"also inside");
    let dst = tempfile::tempdir().unwrap();
    apply(
        b.into_inner().unwrap().as_slice(),
        dst.path(),
        Mode::Flatten,
    )
    .unwrap();
    assert_eq!(
        fs::read_to_string(dst.path().join("real/file")).unwrap(),
        "inside"
    );
    assert_eq!(
        fs::read_to_string(dst.path().join("real/file2")).unwrap(),
        "also inside"
    );
}

#[test]
fn snapshots_are_keyed_by_diff_id_and_checked() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path().join("store")).unwrap();
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("f"), "x").unwrap();
    let (tar, diff_id) = tar_of(src.path(), Options::default());
    assert_eq!(
        unpack_snapshot(&store, tar.as_slice(), Some(&diff_id)).unwrap(),
        diff_id
    );
    assert_eq!(
        fs::read_to_string(store.snapshot_path(&diff_id).join("f")).unwrap(),
        "x"
    );
    let wrong = Digest::of(b"other");
    let err = unpack_snapshot(&store, tar.as_slice(), Some(&wrong)).unwrap_err();
    assert!(matches!(err, ApplyError::DiffIdMismatch { .. }));
    assert_eq!(fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);
}

#[test]
fn a_corrupt_tar_is_an_error_not_a_panic() {
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("f"), "x".repeat(5000)).unwrap();
    let (mut tar, _) = tar_of(src.path(), Options::default());
    tar.truncate(700);
    let dst = tempfile::tempdir().unwrap();
    assert!(apply(tar.as_slice(), dst.path(), Mode::Flatten).is_err());
    let garbage = vec![0x1f, 0x8b, 1, 2, 3];
    assert!(apply(garbage.as_slice(), dst.path(), Mode::Flatten).is_err());
}
