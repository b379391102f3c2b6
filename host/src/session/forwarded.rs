//! Calls this plugin makes to other plugins through the host
//! (`plugins.call`), while they are served: bounded per plugin, cancelled
//! by the plugin's CANCEL, and all cancelled when its session ends, so a
//! caller that goes away leaves no work behind on the callee.

use iglu_bus::CallId;
use tokio::task::AbortHandle;

use super::Session;

/// Calls one plugin may have in flight to other plugins at once.
pub const MAX_FORWARDED: usize = 1024;

impl Session {
    fn forwarded(&self) -> std::sync::MutexGuard<'_, iglu_bus::CallIdMap<AbortHandle>> {
        self.forwarded.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps the task serving call `id`; false (and the task is aborted)
    /// if the session ended or already has [`MAX_FORWARDED`] of them.
    pub fn track_forwarded(&self, id: CallId, task: AbortHandle) -> bool {
        let mut forwarded = self.forwarded();
        if self.is_closed() || forwarded.len() >= MAX_FORWARDED {
            task.abort();
            return false;
        }
        forwarded.insert(id, task);
        true
    }

    /// Call `id` was answered.
    pub fn forwarded_done(&self, id: &CallId) {
        self.forwarded().remove(id);
    }

    /// The plugin cancelled call `id`: the forwarded call is dropped, which
    /// sends CANCEL on to the callee. False if there was no such call.
    pub fn cancel_forwarded(&self, id: &CallId) -> bool {
        match self.forwarded().remove(id) {
            Some(task) => {
                task.abort();
                true
            }
            None => false,
        }
    }

    /// Whether it has room for one more.
    pub fn forwarded_room(&self) -> bool {
        self.forwarded().len() < MAX_FORWARDED
    }

    pub(super) fn abort_forwarded(&self) {
        for (_, task) in self.forwarded().drain() {
            task.abort();
        }
    }
}
