//! The watched `plugin_dir`: while the host runs, an executable that
//! appears in it is started as a plugin, one that leaves it is stopped and
//! forgotten, and one that is replaced (a new file, or new contents) is
//! restarted.
//!
//! The directory is looked at every [`POLL`] (no inotify: a poll is one
//! `readdir` and a `stat` per file, and works on every file system,
//! network and container mounts included). A change counts only once the
//! file has stayed the same for a whole poll: a file still being written
//! (its size or time changing) is not started half-written, and a plugin
//! is not restarted at every block a slow `cp` writes.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::config::plugin_dir;
use crate::config::PluginSpec;
use crate::plugin::handle::Command;
use crate::plugin::registry::PluginKind;
use crate::roster;
use crate::shared::Shared;

/// How often the directory is looked at; a change is acted on after
/// between one and two of these.
pub const POLL: Duration = Duration::from_millis(500);

/// What identifies one version of a file: a replaced file has a new inode,
/// a rewritten one a new size or time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    inode: u64,
    len: u64,
    mtime_ns: i128,
}

type Scan = BTreeMap<String, (PluginSpec, Fingerprint)>;

fn scan(dir: &Path) -> Scan {
    let specs = match plugin_dir::scan(dir) {
        Ok(specs) => specs,
        Err(e) => {
            tracing::debug!(error = %e, "plugin_dir cannot be read");
            return Scan::new();
        }
    };
    specs
        .into_iter()
        .filter_map(|spec| {
            let meta = std::fs::metadata(&spec.command).ok()?;
            let fp = Fingerprint {
                inode: meta.ino(),
                len: meta.len(),
                mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            };
            Some((spec.id.clone(), (spec, fp)))
        })
        .collect()
}

async fn scan_off_thread(dir: &Path) -> Scan {
    let dir: PathBuf = dir.to_owned();
    tokio::task::spawn_blocking(move || scan(&dir))
        .await
        .unwrap_or_default()
}

/// Whether plugin `id` in the registry is the one from `path` (not a
/// plugin of the config, or a package, with the same id).
fn is_from(shared: &Shared, id: &str, path: &Path) -> bool {
    shared
        .registry
        .read(id, |f| matches!(f.kind(), PluginKind::Managed(s) if s.command == path && s.package.is_none()))
        .unwrap_or(false)
}

/// Watches `dir` until the host shuts down.
pub async fn run(shared: Arc<Shared>, dir: PathBuf) {
    let mut last = scan_off_thread(&dir).await;
    // The files the host started at start-up.
    let mut running: BTreeMap<String, Fingerprint> = last
        .iter()
        .filter(|(id, (spec, _))| is_from(&shared, id, &spec.command))
        .map(|(id, (_, fp))| (id.clone(), *fp))
        .collect();
    let mut warned = std::collections::BTreeSet::new();
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            _ = tokio::time::sleep(POLL) => {}
        }
        let now = scan_off_thread(&dir).await;
        for (id, (spec, fp)) in &now {
            let settled = last.get(id).is_some_and(|(_, before)| before == fp);
            if !settled {
                continue;
            }
            match running.get(id) {
                None if shared.registry.contains(id) => {
                    if warned.insert(id.clone()) {
                        tracing::warn!(plugin = %id, path = %spec.command.display(), "plugin_dir: not started, a plugin with this id is already there");
                    }
                }
                None => {
                    tracing::info!(plugin = %id, path = %spec.command.display(), "plugin_dir: new executable, starting it");
                    match roster::add(&shared, spec.clone()) {
                        Ok(()) => {
                            running.insert(id.clone(), *fp);
                        }
                        Err(e) => {
                            tracing::warn!(plugin = %id, error = %e, "plugin_dir: could not add it")
                        }
                    }
                }
                Some(before) if before != fp => {
                    tracing::info!(plugin = %id, path = %spec.command.display(), "plugin_dir: executable replaced, restarting it");
                    running.insert(id.clone(), *fp);
                    if let Err(e) = shared.handles.command(id, Command::Restart).await {
                        tracing::warn!(plugin = %id, error = %e, "plugin_dir: could not restart it");
                    }
                }
                Some(_) => {}
            }
        }
        let gone: Vec<String> = running
            .keys()
            .filter(|id| !now.contains_key(*id) && !last.contains_key(*id))
            .cloned()
            .collect();
        for id in gone {
            tracing::info!(plugin = %id, "plugin_dir: executable removed, stopping it");
            running.remove(&id);
            if let Err(e) = roster::remove(&shared, &id).await {
                tracing::warn!(plugin = %id, error = %e, "plugin_dir: could not remove it");
            }
        }
        warned.retain(|id| now.contains_key(id));
        last = now;
    }
}
