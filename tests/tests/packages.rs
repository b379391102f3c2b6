//! Plugin packages through the real CLI: `iglu keygen`, `iglu package`
//! (with `--sign`) and `iglu verify`: a good bundle passes, and a wrong
//! key, a missing signature, a changed byte, a malformed manifest, a path
//! escaping the bundle and a link are each refused with the reason.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use iglu_tests::{bin, fresh_dir};

fn iglu(args: &[&str]) -> (bool, String) {
    let out = Command::new(bin("iglu")).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

const MANIFEST: &str = r#"
id = "lights"
name = "Lights"
author = "Iglu developers"
version = "1.2.0"
description = "The home's lights"
executable = "bin/iglu-plugin-lights"
provides = ["iglu.light@1.0.0"]

[permissions]
publish = ["home/+/light/state"]
subscribe = ["home/+/light/set"]
host_api = ["kv.*", "events.*"]

[settings.rooms]
type = "string"
default = "kitchen,hall"
"#;

/// A package directory (its executable a small script: packing a debug
/// build of the real plugin would take most of the test's time).
fn package_dir(root: &Path, manifest: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = root.join("lights-pkg");
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    let exe = dir.join("bin/iglu-plugin-lights");
    std::fs::write(&exe, "#!/bin/sh\nexec true\n").unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(dir.join("iglu-plugin.toml"), manifest).unwrap();
    dir
}

#[test]
fn a_signed_bundle_verifies_with_its_key_and_every_tampering_is_refused() {
    let root = fresh_dir("pkg");
    let (ok, out) = iglu(&["keygen", s(&root.join("alice"))]);
    assert!(ok, "{out}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(root.join("alice.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the secret key is private");
    assert!(iglu(&["keygen", s(&root.join("mallory"))]).0);
    let dir = package_dir(&root, MANIFEST);
    let out_dir = root.join("out");
    let (ok, out) = iglu(&[
        "package",
        s(&dir),
        "--sign",
        s(&root.join("alice.key")),
        "--out",
        s(&out_dir),
    ]);
    assert!(ok, "{out}");
    let bundle = out_dir.join("lights-1.2.0.iglu.tar.gz");
    assert!(bundle.exists(), "{out}");
    assert!(out_dir.join("lights-1.2.0.iglu.tar.gz.sha256").exists());
    assert!(out_dir.join("lights-1.2.0.iglu.tar.gz.sig").exists());

    let alice = root.join("alice.pub");
    let mallory = root.join("mallory.pub");
    let (ok, out) = iglu(&[
        "verify",
        s(&bundle),
        "--key",
        s(&mallory),
        "--key",
        s(&alice),
    ]);
    assert!(ok, "{out}");
    assert!(
        out.contains("lights 1.2.0") && out.contains("home/+/light/state"),
        "{out}"
    );

    // Not signed by a trusted key.
    let (ok, out) = iglu(&["verify", s(&bundle), "--key", s(&mallory)]);
    assert!(!ok && out.contains("not signed by any"), "{out}");
    // A changed byte: the checksum says so.
    let mut bytes = std::fs::read(&bundle).unwrap();
    let copy = out_dir.join("copy.iglu.tar.gz");
    let last = bytes.len() - 5;
    bytes[last] ^= 0xff;
    std::fs::write(&copy, &bytes).unwrap();
    std::fs::copy(
        out_dir.join("lights-1.2.0.iglu.tar.gz.sha256"),
        out_dir.join("copy.iglu.tar.gz.sha256"),
    )
    .unwrap();
    let (ok, out) = iglu(&["verify", s(&copy), "--key", s(&alice)]);
    assert!(!ok && out.contains("checksum"), "{out}");
    // Without its checksum file, the signature catches it.
    std::fs::remove_file(out_dir.join("copy.iglu.tar.gz.sha256")).unwrap();
    std::fs::copy(
        out_dir.join("lights-1.2.0.iglu.tar.gz.sig"),
        out_dir.join("copy.iglu.tar.gz.sig"),
    )
    .unwrap();
    let (ok, out) = iglu(&["verify", s(&copy), "--key", s(&alice)]);
    assert!(!ok && out.contains("signature"), "{out}");
    // Unsigned: only when allowed explicitly.
    let (ok, _) = iglu(&["package", s(&dir), "--out", s(&root.join("unsigned"))]);
    assert!(ok);
    let unsigned = root.join("unsigned/lights-1.2.0.iglu.tar.gz");
    let (ok, out) = iglu(&["verify", s(&unsigned)]);
    assert!(!ok && out.contains("not signed"), "{out}");
    let (ok, out) = iglu(&["verify", s(&unsigned), "--allow-unsigned"]);
    assert!(ok, "{out}");
}

#[test]
fn a_malformed_manifest_a_link_and_a_path_escaping_the_bundle_are_refused() {
    let root = fresh_dir("pkg-bad");
    for (manifest, reason) in [
        (
            MANIFEST.replace("bin/iglu-plugin-lights", "../escape"),
            "inside the package",
        ),
        (MANIFEST.replace("1.2.0", "one"), "major.minor.patch"),
        (
            MANIFEST.replace("id = \"lights\"", "id = \"Lights!\""),
            "id",
        ),
        (
            MANIFEST.replace("default = \"kitchen,hall\"", "default = 3"),
            "setting rooms",
        ),
        (format!("{MANIFEST}\nsurprise = 1\n"), "surprise"),
    ] {
        let dir = package_dir(&root.join(reason.replace(' ', "_")), &manifest);
        let (ok, out) = iglu(&["package", s(&dir), "--out", s(&root.join("out"))]);
        assert!(
            !ok && out.contains("manifest") && out.contains(reason),
            "{reason}: {out}"
        );
    }
    // A link in the package directory is not packed.
    let dir = package_dir(&root.join("link"), MANIFEST);
    std::os::unix::fs::symlink("/etc/passwd", dir.join("passwd")).unwrap();
    let (ok, out) = iglu(&["package", s(&dir), "--out", s(&root.join("out"))]);
    assert!(!ok && out.contains("links"), "{out}");
    // A bundle made elsewhere, with an entry escaping it: refused before
    // anything is written.
    let evil = root.join("evil.iglu.tar.gz");
    let script = format!(
        r##"
import io, tarfile
t = tarfile.open({evil:?}, "w:gz")
def add(name, data, mode=0o644):
    i = tarfile.TarInfo(name); i.size = len(data); i.mode = mode
    t.addfile(i, io.BytesIO(data))
add("iglu-plugin.toml", {manifest:?}.encode())
add("bin/iglu-plugin-lights", b"#!/bin/sh\n", 0o755)
add("../escaped-file", b"gotcha")
t.close()
"##,
        evil = s(&evil),
        manifest = MANIFEST
    );
    let status = Command::new("python3")
        .args(["-c", &script])
        .status()
        .unwrap();
    assert!(status.success(), "python3 made the bundle");
    let (ok, out) = iglu(&["verify", s(&evil), "--allow-unsigned"]);
    assert!(!ok && out.contains("escapes"), "{out}");
    assert!(!std::env::temp_dir().join("escaped-file").exists());
}
