//! The watched `plugin_dir`, with a real host: an executable written into
//! it slowly is not started half-written, then started once it stays the
//! same; a replaced one is restarted (a new process, its new contents); a
//! removed one is stopped and forgotten; a plugin of the config with the
//! same id is left alone. Settings reach `plugin_dir` plugins too.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use iglu_tests::{bin, fresh_dir, plugin, TestHost};
use serde_json::json;

fn script(marker: &str) -> String {
    format!(
        "#!/bin/sh\n# {marker}\nexec {:?} \"$@\"\n",
        bin("iglu-plugin-echo").display().to_string()
    )
}

/// Writes `path` whole under another name and renames it in (how an
/// installer replaces a running executable).
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn present(host: &TestHost, id: &str) -> bool {
    host.status().iter().any(|p| p["id"] == json!(id))
}

#[test]
fn plugins_come_and_go_with_their_files() {
    let root = fresh_dir("watch");
    let dir = root.join("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all(root.join("host")).unwrap();
    let settings = format!(
        "plugin_dir = {:?}\n{}[settings.slow]\nmode = \"quiet\"\n",
        dir.display().to_string(),
        iglu_tests::sandbox_reading_binaries()
    );
    let host = TestHost::start_in(
        &root.join("host"),
        &settings,
        &[plugin("taken", "iglu-plugin-echo", &[])],
    );
    host.wait_state("taken", "running");

    // Written a piece at a time, for longer than the watch's poll: not
    // started while it changes.
    let slow = dir.join("slow");
    let text = script("slow");
    {
        let mut f = std::fs::File::create(&slow).unwrap();
        std::fs::set_permissions(&slow, std::fs::Permissions::from_mode(0o755)).unwrap();
        let written = Instant::now();
        let mut rest = text.as_bytes();
        while written.elapsed() < Duration::from_millis(2000) {
            if let Some((first, tail)) = rest.split_first() {
                f.write_all(&[*first]).unwrap();
                rest = tail;
            } else {
                // Keep changing it with harmless comment bytes.
                f.write_all(b"#\n").unwrap();
            }
            f.flush().unwrap();
            assert!(
                !present(&host, "slow"),
                "started while it was being written"
            );
            std::thread::sleep(Duration::from_millis(150));
        }
        f.write_all(rest).unwrap();
    }
    host.eventually("slow to be started", || {
        present(&host, "slow").then_some(())
    });
    let first = host.wait_state("slow", "running")["pid"].as_u64().unwrap();
    // plugin_dir plugins get settings from the config too.
    assert_eq!(
        host.call("slow", "settings", json!(null)).unwrap(),
        json!({"mode": "quiet"})
    );

    // Replaced: restarted, a new process.
    replace(&slow, &script("slow, version 2"));
    host.wait_new_pid("slow", first);

    // A file with the id of a plugin of the config is not started.
    replace(&dir.join("taken"), &script("taken"));
    let taken = host.plugin("taken")["pid"].as_u64().unwrap();

    // Removed: stopped and forgotten.
    std::fs::remove_file(&slow).unwrap();
    host.eventually("slow to be gone", || {
        (!present(&host, "slow")).then_some(())
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(host.plugin("taken")["pid"].as_u64().unwrap(), taken);
    assert!(host
        .log()
        .contains("a plugin with this id is already there"));
}
