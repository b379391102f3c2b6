//! The runtime layer of settings on disk: one JSON object of plugins'
//! objects, replaced whole (written beside, synced, renamed), so a crash
//! leaves the old file or the new one, never half of one.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde_json::{Map, Value as Json};

use super::SettingsError;

/// Largest settings file read: far above any real use, and a bound on
/// what a corrupt or hostile file can make the host allocate.
const MAX_BYTES: u64 = 4 << 20;

type Runtime = BTreeMap<String, Map<String, Json>>;

/// Reads the file; a missing file is no settings.
pub fn read(path: &Path) -> Result<Runtime, SettingsError> {
    let io = |source| SettingsError::Io {
        path: path.to_owned(),
        source,
    };
    let corrupt = |reason: String| SettingsError::Corrupt {
        path: path.to_owned(),
        reason,
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Runtime::new()),
        Err(e) => return Err(io(e)),
    };
    if meta.len() > MAX_BYTES {
        return Err(corrupt(format!("larger than {MAX_BYTES} bytes")));
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    serde_json::from_str(&text).map_err(|e| {
        corrupt(format!(
            "not settings ({{\"plugin\": {{\"key\": value}}}}): {e}"
        ))
    })
}

/// Replaces the file with `runtime`.
pub fn write(path: &Path, runtime: &Runtime) -> Result<(), SettingsError> {
    let io = |source| SettingsError::Io {
        path: path.to_owned(),
        source,
    };
    let text =
        serde_json::to_vec_pretty(runtime).map_err(|e| io(std::io::Error::other(e.to_string())))?;
    let tmp = path.with_extension("json.new");
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(&text).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}
