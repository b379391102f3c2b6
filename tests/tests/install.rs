//! Packages on a running host, through the real CLI: `iglu install`
//! (signature against the config's trusted keys, approval, start),
//! `iglu plugins`, `iglu settings` (validation, the plugin told),
//! permissions of the approved manifest enforced, the executable's sha256
//! checked before every start, `iglu upgrade` under load with no failed
//! call (and its rollback when the new version crashes, and re-approval
//! for more permissions), `iglu uninstall [--purge]`.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use iglu_tests::{bin, fresh_dir, StopOnDrop, TestHost};
use serde_json::{json, Value};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A package of the echo plugin (a script that runs the workspace's echo:
/// packing its 60 MB debug build would take most of the test's time).
fn package(
    root: &Path,
    id: &str,
    version: &str,
    permissions: &str,
    script: Option<&str>,
) -> PathBuf {
    let dir = root.join(format!("{id}-{version}"));
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    let exe = dir.join("bin/run");
    let body = match script {
        Some(body) => body.to_owned(),
        None => format!(
            "#!/bin/sh\nexport ECHO_SUBSCRIBE='load/#'\nexec {:?} \"$@\"\n",
            s(&bin("iglu-plugin-echo"))
        ),
    };
    std::fs::write(&exe, body).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let manifest = format!(
        r#"
id = "{id}"
name = "Greeter"
author = "Iglu tests"
version = "{version}"
executable = "bin/run"

[permissions]
{permissions}

[settings.greeting]
type = "string"
default = "hello"

[settings.times]
type = "integer"
default = 1
"#
    );
    std::fs::write(dir.join("iglu-plugin.toml"), manifest).unwrap();
    dir
}

const PERMS: &str = r#"publish = ["greet/#"]
subscribe = ["load/#"]
host_api = ["kv.*", "events.*"]"#;

fn ok(out: &std::process::Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    text
}

fn fails(out: &std::process::Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "expected a failure: {text}");
    text
}

/// Builds a bundle (signed with `key`, if given) into `root/out`.
fn bundle(host: &TestHost, dir: &Path, key: Option<&Path>) -> PathBuf {
    let out = dir.parent().unwrap().join("out");
    let mut args = vec!["package", s(dir), "--out", s(&out)];
    if let Some(key) = key {
        args.extend(["--sign", s(key)]);
    }
    let text = ok(&host.cli(&args));
    PathBuf::from(text.lines().next().unwrap().trim())
}

fn start(root: &Path, extra: &str) -> (TestHost, PathBuf) {
    let key = root.join("keys/dev");
    std::fs::create_dir_all(root.join("keys")).unwrap();
    let out = std::process::Command::new(bin("iglu"))
        .args(["keygen", s(&key)])
        .output()
        .unwrap();
    ok(&out);
    // The packages' scripts run the workspace's echo: its directory is
    // one more the sandbox lets them read.
    let settings = format!(
        "{}[packages]\ntrusted_keys = [{:?}]\n[settings.greeter]\ntimes = 2\n{extra}",
        iglu_tests::sandbox_reading_binaries(),
        s(&key.with_extension("pub"))
    );
    let host = TestHost::start_in(&root.join("host"), &settings, &[]);
    (host, key.with_extension("key"))
}

fn plugins(host: &TestHost) -> Vec<Value> {
    let text = ok(&host.cli(&["plugins", "--json"]));
    serde_json::from_str::<Value>(&text)
        .unwrap()
        .as_array()
        .cloned()
        .unwrap()
}

#[test]
fn install_settings_permissions_integrity_and_uninstall() {
    let root = fresh_dir("install");
    std::fs::create_dir_all(root.join("host")).unwrap();
    let (host, key) = start(&root, "");
    let dir = package(&root, "greeter", "1.0.0", PERMS, None);
    let signed = bundle(&host, &dir, Some(&key));

    // No terminal and no --yes: nothing is installed.
    let text = fails(&host.cli(&["install", s(&signed)]));
    assert!(
        text.contains("--yes") && text.contains("publish greet/#"),
        "{text}"
    );
    assert!(plugins(&host).is_empty());

    // Signed by a key the host does not trust: refused.
    let other = root.join("keys/other");
    ok(&host.cli(&["keygen", s(&other)]));
    let dir_other = package(&root.join("o"), "greeter", "1.0.0", PERMS, None);
    let foreign = bundle(&host, &dir_other, Some(&other.with_extension("key")));
    let text = fails(&host.cli(&["install", s(&foreign), "--yes"]));
    assert!(text.contains("signature"), "{text}");
    // Unsigned: refused without the flag.
    let dir_unsigned = package(&root.join("u"), "greeter", "1.0.0", PERMS, None);
    let unsigned = bundle(&host, &dir_unsigned, None);
    let text = fails(&host.cli(&["install", s(&unsigned), "--yes"]));
    assert!(text.contains("not signed"), "{text}");

    let text = ok(&host.cli(&["install", s(&signed), "--yes"]));
    assert!(text.contains("\"state\": \"running\""), "{text}");
    let list = plugins(&host);
    let p = list.iter().find(|p| p["id"] == json!("greeter")).unwrap();
    assert_eq!(p["source"], json!("package"), "{p}");
    assert_eq!(p["version"], json!("1.0.0"), "{p}");
    assert_eq!(p["permissions"]["publish"], json!(["greet/#"]), "{p}");
    // Installing it again is refused: that is an upgrade.
    let text = fails(&host.cli(&["install", s(&signed), "--yes"]));
    assert!(text.contains("iglu upgrade"), "{text}");

    // Settings: the schema's default, the config's value over it.
    assert_eq!(
        host.call("greeter", "settings", json!(null)).unwrap(),
        json!({"greeting": "hello", "times": 2})
    );
    let text = fails(&host.cli(&["settings", "set", "greeter", "times", "lots"]));
    assert!(text.contains("not an integer"), "{text}");
    let text = fails(&host.cli(&["settings", "set", "greeter", "colour", "red"]));
    assert!(text.contains("no setting named"), "{text}");
    ok(&host.cli(&["settings", "set", "greeter", "times", "5"]));
    host.eventually("the plugin to hear of its new settings", || {
        let n = host.call("greeter", "settings_changes", json!(null)).ok()?;
        (n.as_u64()? >= 1).then_some(())
    });
    assert_eq!(
        host.call("greeter", "settings", json!(null)).unwrap()["times"],
        json!(5)
    );
    let shown = ok(&host.cli(&["settings", "get", "greeter"]));
    assert!(shown.contains("runtime"), "{shown}");

    // The approved permissions are enforced.
    host.call(
        "greeter",
        "publish",
        json!({"topic": "greet/x", "payload": 1}),
    )
    .unwrap();
    let err = host
        .call(
            "greeter",
            "publish",
            json!({"topic": "home/x", "payload": 1}),
        )
        .unwrap_err();
    assert!(err.message.contains("permission_denied"), "{err:?}");
    host.call("greeter", "kv_set", json!({"key": "k", "value": 7}))
        .unwrap();

    // A changed executable is refused at its next start.
    let installed = root.join("host/data/packages/greeter");
    let version_dir = std::fs::read_dir(&installed)
        .unwrap()
        .flatten()
        .find(|e| e.path().is_dir())
        .unwrap()
        .path();
    let exe = version_dir.join("bin/run");
    let mut script = std::fs::read_to_string(&exe).unwrap();
    script.push_str("# tampered\n");
    std::fs::write(&exe, script).unwrap();
    ok(&host.cli(&["restart", "greeter"]));
    let p = host.wait_plugin("greeter", "refused to start", |p| {
        p["last_exit"]
            .as_str()
            .is_some_and(|e| e.contains("changed since it was installed"))
    });
    assert_ne!(p["state"], json!("running"), "{p}");

    // Uninstall keeps its data unless --purge.
    let text = ok(&host.cli(&["uninstall", "greeter"]));
    assert!(text.contains("data is kept"), "{text}");
    assert!(!host.status().iter().any(|p| p["id"] == json!("greeter")));
    assert!(!installed.exists());
    assert_eq!(
        host.kv(json!({"op": "get", "plugin": "greeter", "key": "k"}))
            .unwrap(),
        json!(7)
    );
    // Installed again (unsigned, allowed by the flag) and purged.
    ok(&host.cli(&["install", s(&unsigned), "--yes", "--allow-unsigned"]));
    host.wait_state("greeter", "running");
    let text = ok(&host.cli(&["uninstall", "greeter", "--purge"]));
    assert!(text.contains("removed"), "{text}");
    assert!(host
        .kv(json!({"op": "get", "plugin": "greeter", "key": "k"}))
        .is_err());
}

#[test]
fn an_upgrade_under_load_fails_no_call_and_a_crashing_one_rolls_back() {
    let root = fresh_dir("upgrade");
    std::fs::create_dir_all(root.join("host")).unwrap();
    let (host, key) = start(&root, "");
    let v1 = bundle(
        &host,
        &package(&root, "greeter", "1.0.0", PERMS, None),
        Some(&key),
    );
    let v2 = bundle(
        &host,
        &package(&root, "greeter", "1.1.0", PERMS, None),
        Some(&key),
    );
    let crashing = bundle(
        &host,
        &package(
            &root,
            "greeter",
            "1.2.0",
            PERMS,
            Some("#!/bin/sh\nexit 3\n"),
        ),
        Some(&key),
    );
    // A new version that handshakes but lacks what it must provide.
    let lacking = package(&root, "greeter", "1.2.1", PERMS, None);
    let manifest = std::fs::read_to_string(lacking.join("iglu-plugin.toml")).unwrap();
    std::fs::write(
        lacking.join("iglu-plugin.toml"),
        manifest.replace(
            "executable = \"bin/run\"",
            "executable = \"bin/run\"\nprovides = [\"iglu.nothing@1\"]",
        ),
    )
    .unwrap();
    let lacking = bundle(&host, &lacking, Some(&key));
    let more = format!("{PERMS}\ncalls = [\"*\"]");
    let v3 = bundle(
        &host,
        &package(&root, "greeter", "1.3.0", &more, None),
        Some(&key),
    );
    ok(&host.cli(&["install", s(&v1), "--yes"]));
    let before = host.wait_state("greeter", "running")["pid"]
        .as_u64()
        .unwrap();

    // Calls from 8 clients and a stream of events, all through the upgrades.
    let stop = AtomicBool::new(false);
    let (calls, failures, published) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    std::thread::scope(|scope| {
        let _stop = StopOnDrop(&stop);
        for _ in 0..8 {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    match host.call("greeter", "echo", json!("hi")) {
                        Ok(v) if v == json!("hi") => calls.fetch_add(1, Ordering::Relaxed),
                        other => {
                            eprintln!("failed call: {other:?}");
                            failures.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            });
        }
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let n = published.load(Ordering::Relaxed);
                let r = host.request(&json!({"cmd": "publish", "topic": "load/n", "payload": n}));
                assert_eq!(r["ok"], json!(true), "{r}");
                published.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        });
        std::thread::sleep(std::time::Duration::from_millis(500));
        // The same permissions: no approval needed.
        let text = ok(&host.cli(&["upgrade", s(&v2)]));
        assert!(text.contains("\"switched\": true"), "{text}");
        std::thread::sleep(std::time::Duration::from_millis(300));
        // A new version that crashes at start: the old one goes on.
        let text = fails(&host.cli(&["upgrade", s(&crashing)]));
        assert!(
            text.contains("upgrade_failed") && text.contains("still serves"),
            "{text}"
        );
        // Refused at its handshake: the old one goes on, and says why.
        let text = fails(&host.cli(&["upgrade", s(&lacking)]));
        assert!(
            text.contains("refused") && text.contains("iglu.nothing@1"),
            "{text}"
        );
        // More permissions: approval again (no terminal here, so --yes).
        let text = fails(&host.cli(&["upgrade", s(&v3)]));
        assert!(text.contains("call *") && text.contains("--yes"), "{text}");
        ok(&host.cli(&["upgrade", s(&v3), "--yes"]));
        std::thread::sleep(std::time::Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
    });
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "calls failed during the upgrades\n{}",
        host.log()
    );
    assert!(calls.load(Ordering::Relaxed) > 100);
    let p = host.wait_state("greeter", "running");
    assert_ne!(p["pid"].as_u64().unwrap(), before, "a new process serves");
    let list = plugins(&host);
    let g = list.iter().find(|p| p["id"] == json!("greeter")).unwrap();
    assert_eq!(g["version"], json!("1.3.0"), "{g}");
    assert_eq!(g["calls"], json!(["*"]), "{g}");
    // Every event reached one of the versions once: acknowledged exactly
    // as many times as published, none dropped, none waiting.
    let n = published.load(Ordering::Relaxed);
    let p = host.wait_plugin("greeter", "every event acknowledged", |p| {
        p["events"]["queued"] == json!(0) && p["events"]["in_flight"] == json!(0)
    });
    assert_eq!(p["events"]["dropped"], json!(0), "{p}");
    assert_eq!(p["events"]["delivered"], json!(n), "{p}");
    // Only the version in force is kept on disk.
    let dirs = std::fs::read_dir(root.join("host/data/packages/greeter"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .count();
    assert_eq!(dirs, 1);
}

/// A bundle made elsewhere (with Python's tarfile), holding `extra`
/// entries besides a manifest and an executable.
fn foreign_bundle(path: &Path, manifest: &str, extra: &str) {
    let script = format!(
        r##"
import io, tarfile
t = tarfile.open({path:?}, "w:gz")
def add(name, data, mode=0o644):
    i = tarfile.TarInfo(name); i.size = len(data); i.mode = mode
    t.addfile(i, io.BytesIO(data))
add("iglu-plugin.toml", {manifest:?}.encode())
add("bin/run", b"#!/bin/sh\n", 0o755)
{extra}
t.close()
"##,
        path = s(path),
    );
    let status = std::process::Command::new("python3")
        .args(["-c", &script])
        .status()
        .unwrap();
    assert!(status.success(), "python3 made the bundle");
}

#[test]
fn install_refuses_a_bundle_escaping_its_directory_or_with_a_bad_manifest() {
    let root = fresh_dir("evil");
    std::fs::create_dir_all(root.join("host")).unwrap();
    let (host, _key) = start(&root, "");
    let good = "id = \"evil\"\nname = \"Evil\"\nversion = \"1.0.0\"\nexecutable = \"bin/run\"\n";
    let escaping = root.join("escaping.iglu.tar.gz");
    foreign_bundle(&escaping, good, "add(\"../../outside\", b\"gotcha\")");
    let text = fails(&host.cli(&["install", s(&escaping), "--yes", "--allow-unsigned"]));
    assert!(text.contains("escapes"), "{text}");
    let malformed = root.join("malformed.iglu.tar.gz");
    foreign_bundle(
        &malformed,
        "id = \"evil\"\nversion = \"one\"\nexecutable = \"bin/run\"\n",
        "",
    );
    let text = fails(&host.cli(&["install", s(&malformed), "--yes", "--allow-unsigned"]));
    assert!(text.contains("manifest"), "{text}");
    // Nothing was installed, nothing written outside the store.
    assert!(plugins(&host).is_empty());
    assert!(!root.join("host/data/outside").exists() && !root.join("host/outside").exists());
    let left: Vec<_> = std::fs::read_dir(root.join("host/data/packages"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}
