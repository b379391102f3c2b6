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
    /// if the session ended, already has [`MAX_FORWARDED`] of them, or
    /// already has a call with this id in flight (ids are the caller's).
    pub fn track_forwarded(&self, id: CallId, task: AbortHandle) -> bool {
        let mut forwarded = self.forwarded();
        if self.is_closed() || forwarded.len() >= MAX_FORWARDED || forwarded.contains_key(&id) {
            task.abort();
            return false;
        }
        forwarded.insert(id, task);
        true
    }

    /// Call `id`, served by task `task`, was answered. An entry of another
    /// task under the same id (a reused id) is left alone.
    pub fn forwarded_done(&self, id: &CallId, task: tokio::task::Id) {
        let mut forwarded = self.forwarded();
        if forwarded.get(id).is_some_and(|t| t.id() == task) {
            forwarded.remove(id);
        }
    }

    /// Whether call `id` is in flight already.
    pub fn forwarding(&self, id: &CallId) -> bool {
        self.forwarded().contains_key(id)
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
