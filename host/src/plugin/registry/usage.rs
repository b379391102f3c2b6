//! What the watchdog learns of a plugin's processes, and why it killed
//! one: kept with the plugin's facts, so status shows the one and the
//! crash that follows reports the other.

use super::Registry;

impl Registry {
    /// Records what the watchdog read of its processes.
    pub fn set_usage(&self, id: &str, usage: crate::limits::Usage) {
        if let Some(e) = self.lock().get_mut(id) {
            e.usage = Some(usage);
        }
    }

    /// Records why the host is killing process `pid` of plugin `id`.
    pub fn set_kill_reason(&self, id: &str, pid: u32, reason: String) {
        if let Some(e) = self.lock().get_mut(id) {
            e.kill_reason = Some((pid, reason));
        }
    }

    /// Why the host killed the plugin's current process, if it did.
    pub fn take_kill_reason(&self, id: &str) -> Option<String> {
        let mut plugins = self.lock();
        let e = plugins.get_mut(id)?;
        match e.kill_reason.take() {
            Some((pid, why)) if e.pid == Some(pid) => Some(why),
            _ => None,
        }
    }
}
