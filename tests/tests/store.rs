//! The host's store on disk, through the real binary: an acknowledged
//! write survives SIGKILL of the host (100 times), state and retained
//! events survive a restart, quotas refuse with a typed error, `iglu kv`
//! works against the running host, a foreign store file is refused and
//! kept, and a full disk fails writes while everyone keeps running.

#![allow(clippy::unwrap_used)]

use iglu_tests::events::{events, publish, subscriber};
use iglu_tests::{bin, plugin, TestHost};
use nix::sys::signal::Signal;
use serde_json::{json, Value};

#[test]
fn an_acknowledged_write_survives_a_sigkill_of_the_host_right_after_it_100_times() {
    let mut host = TestHost::start("", &[plugin("echo", "iglu-plugin-echo", &[])]);
    for i in 0..100u64 {
        // A fresh value each time, so an old one found after the restart fails.
        let value = json!({"round": i, "nonce": std::process::id() as u64 * 1000 + i});
        if i % 10 == 9 {
            // Through a plugin's own kv.set, answered to the plugin, then to us.
            host.wait_state("echo", "running");
            host.call("echo", "kv_set", json!({"key": "last", "value": value}))
                .unwrap();
        } else {
            host.kv(json!({"op": "set", "plugin": "echo", "key": "last", "value": value}))
                .unwrap();
        }
        host.signal(Signal::SIGKILL);
        host.relaunch();
        let found = host
            .kv(json!({"op": "get", "plugin": "echo", "key": "last"}))
            .unwrap_or_else(|e| {
                panic!(
                    "round {i}: the acknowledged value is gone: {e:?}\n{}",
                    host.log()
                )
            });
        assert_eq!(found, value, "round {i}");
    }
}

#[test]
fn a_plugins_state_and_the_retained_events_survive_a_restart_of_the_host() {
    let mut host = TestHost::start(
        "",
        &[
            plugin("thermostat", "iglu-plugin-thermostat", &[]),
            subscriber("sub", "home/#"),
        ],
    );
    host.wait_state("thermostat", "running");
    host.wait_state("sub", "running");
    let set = host
        .call(
            "thermostat",
            "set_target",
            json!({"room": "hall", "celsius": 12}),
        )
        .unwrap();
    assert_eq!(set["target"], json!(12.0));
    publish(&host, "home/hall/window", json!({"open": true}), true);
    publish(&host, "home/hall/door", json!({"open": false}), true);
    publish(&host, "home/hall/door", json!(null), true); // cleared: not retained
    host.signal(Signal::SIGTERM);
    host.wait_exit(iglu_tests::PATIENCE).unwrap();
    host.relaunch();
    host.wait_state("thermostat", "running");
    let room = host
        .call("thermostat", "room", json!({"room": "hall"}))
        .unwrap();
    assert_eq!(
        room["target"],
        json!(12.0),
        "the target set before the restart"
    );
    host.wait_state("sub", "running");
    let first = host.eventually("the retained window state, first", || {
        events(&host, "sub").first().cloned()
    });
    assert_eq!(first["topic"], json!("home/hall/window"), "{first}");
    assert_eq!(first["retained"], json!(true));
    assert_eq!(first["payload"], json!({"open": true}));
    let seen: Vec<Value> = events(&host, "sub")
        .into_iter()
        .filter(|e| e["topic"] == json!("home/hall/door"))
        .collect();
    assert!(seen.is_empty(), "a cleared topic came back: {seen:?}");
}

#[test]
fn quotas_refuse_a_write_with_a_typed_error_naming_the_quota_and_nothing_else() {
    let host = TestHost::start(
        "[store]\nmax_keys = 3",
        &[
            format!(
                "{}store_max_bytes = 200\n",
                plugin("echo", "iglu-plugin-echo", &[])
            ),
            plugin("other", "iglu-plugin-echo", &[]),
        ],
    );
    host.wait_state("echo", "running");
    host.wait_state("other", "running");
    let err = host
        .call(
            "echo",
            "kv_set",
            json!({"key": "big", "value": "x".repeat(300)}),
        )
        .unwrap_err();
    assert!(
        err.message.contains("quota_exceeded") && err.message.contains("max_bytes"),
        "{err:?}"
    );
    for k in ["a", "b", "c"] {
        host.kv(json!({"op": "set", "plugin": "other", "key": k, "value": 1}))
            .unwrap();
    }
    let err = host
        .kv(json!({"op": "set", "plugin": "other", "key": "d", "value": 1}))
        .unwrap_err();
    assert_eq!(err.code, "quota_exceeded", "{err:?}");
    assert!(err.message.contains("max_keys = 3"), "{err:?}");
    // Overwriting within the quota, and the other plugin, are unaffected.
    host.kv(json!({"op": "set", "plugin": "other", "key": "a", "value": 2}))
        .unwrap();
    host.call("echo", "kv_set", json!({"key": "small", "value": 1}))
        .unwrap();
    assert_eq!(
        host.kv(json!({"op": "get", "plugin": "other", "key": "a"}))
            .unwrap(),
        json!(2)
    );
}

fn iglu(host: &TestHost, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(bin("iglu"))
        .arg("--config")
        .arg(&host.config)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn iglu_kv_reads_writes_lists_and_backs_up_the_store_of_the_running_host() {
    let host = TestHost::start("", &[plugin("thermostat", "iglu-plugin-thermostat", &[])]);
    host.wait_state("thermostat", "running");
    host.call(
        "thermostat",
        "set_target",
        json!({"room": "hall", "celsius": 18}),
    )
    .unwrap();
    let (ok, out, err) = iglu(&host, &["kv", "get", "thermostat", "room/hall"]);
    assert!(ok, "{err}");
    let room: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(room["target"], json!(18.0));
    // What the CLI sets, the plugin reads.
    let (ok, _, err) = iglu(
        &host,
        &[
            "kv",
            "set",
            "thermostat",
            "room/attic",
            r#"{"room":"attic","target":9.5,"current":null,"heating":false}"#,
        ],
    );
    assert!(ok, "{err}");
    let attic = host
        .call("thermostat", "room", json!({"room": "attic"}))
        .unwrap();
    assert_eq!(attic["target"], json!(9.5));
    let (ok, out, _) = iglu(
        &host,
        &[
            "kv",
            "list",
            "thermostat",
            "--prefix",
            "room/",
            "--limit",
            "1",
        ],
    );
    assert!(ok);
    let page: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(page["entries"][0]["key"], json!("room/attic"));
    assert_eq!(page["next"], json!("room/attic"));
    // Backup of the whole store, a change, and a restore that replaces.
    let (ok, backup, err) = iglu(&host, &["kv", "export", "--all"]);
    assert!(ok, "{err}");
    let file = host.dir.join("backup.json");
    std::fs::write(&file, &backup).unwrap();
    let (ok, out, _) = iglu(&host, &["kv", "delete", "thermostat", "room/hall"]);
    assert!(ok && out.contains("true"), "{out}");
    let (ok, _, _) = iglu(&host, &["kv", "set", "thermostat", "junk", "1"]);
    assert!(ok);
    let (ok, _, err) = iglu(
        &host,
        &["kv", "import", "--all", "--replace", file.to_str().unwrap()],
    );
    assert!(ok, "{err}");
    let (_, after, _) = iglu(&host, &["kv", "export", "thermostat"]);
    let after: Value = serde_json::from_str(&after).unwrap();
    let before: Value = serde_json::from_str(&backup).unwrap();
    assert_eq!(after, before["plugins"]["thermostat"], "restored exactly");
    let (ok, _, err) = iglu(&host, &["kv", "get", "thermostat", "junk"]);
    assert!(!ok && err.contains("not_found"), "{err}");
}

#[test]
fn a_store_file_that_is_not_iglus_makes_the_host_refuse_to_start_naming_it() {
    let host = TestHost::start("", &[]);
    let data = host.dir.join("data");
    let other = host.dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    let file = other.join("store.redb");
    let garbage: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 253) as u8).collect();
    std::fs::write(&file, &garbage).unwrap();
    let config = host.dir.join("other.toml");
    std::fs::write(
        &config,
        format!(
            "runtime_dir = {:?}\ndata_dir = {:?}\n",
            other.join("rt").display().to_string(),
            other.display().to_string()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(bin("iglu"))
        .arg("--config")
        .arg(&config)
        .arg("run")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&file.display().to_string()), "{stderr}");
    assert_eq!(
        std::fs::read(&file).unwrap(),
        garbage,
        "the file is left as it was"
    );
    // The running host's own store is untouched by all this.
    assert!(data.join("store.redb").exists());
}

/// A small tmpfs, unmounted (lazily) on drop.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    /// Needs root (CI runs as root): a test that cannot run fails, saying why.
    fn mount(at: &std::path::Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(at).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "this test mounts a {size} tmpfs to fill a disk, which needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk(at.to_owned())
    }
}

impl SmallDisk {
    fn remount(&self, mode: &str) {
        let ok = std::process::Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(&self.0)
            .status()
            .unwrap()
            .success();
        assert!(ok, "remount {mode}");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_full_or_read_only_disk_fails_writes_with_storage_error_while_everyone_keeps_running() {
    let dir = iglu_tests::fresh_dir("disk-full");
    let disk = SmallDisk::mount(&dir.join("data"), "2m");
    let host = TestHost::start_in(&dir, "", &[plugin("echo", "iglu-plugin-echo", &[])]);
    host.wait_state("echo", "running");
    host.kv(json!({"op": "set", "plugin": "echo", "key": "before", "value": 1}))
        .unwrap();
    // Fill what is left of the disk.
    let filler = disk.0.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
    }
    let big = "x".repeat(100_000);
    let err = host
        .kv(json!({"op": "set", "plugin": "echo", "key": "big", "value": big}))
        .unwrap_err();
    assert_eq!(err.code, "storage_error", "{err:?}");
    let err = host
        .call("echo", "kv_set", json!({"key": "small", "value": 2}))
        .unwrap_err();
    assert!(err.message.contains("storage_error"), "{err:?}");
    // Everyone else keeps running; reads still answer.
    assert_eq!(
        host.call("echo", "echo", json!("still here")).unwrap(),
        json!("still here")
    );
    assert_eq!(
        host.kv(json!({"op": "get", "plugin": "echo", "key": "before"}))
            .unwrap(),
        json!(1)
    );
    assert_eq!(host.plugin("echo")["restarts"], json!(0));
    // Room again: writes work again, nothing refused was kept.
    std::fs::remove_file(&filler).unwrap();
    host.kv(json!({"op": "set", "plugin": "echo", "key": "after", "value": 3}))
        .unwrap();
    assert!(host
        .kv(json!({"op": "get", "plugin": "echo", "key": "small"}))
        .is_err());
    // A read-only disk (an SD card that turned read-only): the host starts,
    // serves what is stored, and fails writes the same way.
    let mut host = host;
    host.signal(Signal::SIGTERM);
    host.wait_exit(iglu_tests::PATIENCE).unwrap();
    disk.remount("ro");
    host.relaunch();
    host.wait_state("echo", "running");
    assert_eq!(
        host.kv(json!({"op": "get", "plugin": "echo", "key": "after"}))
            .unwrap(),
        json!(3)
    );
    let err = host
        .kv(json!({"op": "set", "plugin": "echo", "key": "ro", "value": 4}))
        .unwrap_err();
    assert_eq!(err.code, "storage_error", "{err:?}");
    assert_eq!(host.call("echo", "echo", json!(1)).unwrap(), json!(1));
    // Writable again: the next write reopens the file and goes through.
    disk.remount("rw");
    host.kv(json!({"op": "set", "plugin": "echo", "key": "rw", "value": 5}))
        .unwrap_or_else(|e| panic!("{e:?}\n{}", host.log()));
    drop(host);
    drop(disk);
}
