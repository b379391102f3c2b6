//! A directory of plugins: every executable file in it is one plugin.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::sections::PluginSpec;
use crate::error::ConfigError;

/// The plugins in `dir`, sorted by id. A file whose name is not a valid
/// plugin id is skipped with a warning rather than guessed at.
pub fn scan(dir: &Path) -> Result<Vec<PluginSpec>, ConfigError> {
    let entries = std::fs::read_dir(dir).map_err(|source| ConfigError::Read {
        path: dir.to_owned(),
        source,
    })?;
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
            continue;
        }
        let id = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        if !iglu_bus::handshake::valid_plugin_id(&id) {
            tracing::warn!(path = %path.display(), "skipping: the file name is not a valid plugin id ([a-z0-9_-], 1-64)");
            continue;
        }
        found.push(PluginSpec::new(&id, path));
    }
    found.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(found)
}
