//! Calls this plugin makes to other plugins through the host
//! (`plugins.call`), while they are served: bounded per plugin, cancelled
//! by the plugin's CANCEL, and all cancelled when its session ends, so a
//! caller that goes away leaves no work behind on the callee.
//!
//! A call to a running callee is forwarded directly: it sits in the
//! callee's call table with a callback that answers this session, and no
//! task waits in between. A call that must wait for its callee to start
//! is served by a task. Either way it is one entry here.

use std::sync::{Arc, Weak};

use iglu_bus::CallId;
use tokio::task::AbortHandle;

use super::Session;

/// Calls one plugin may have in flight to other plugins at once.
pub const MAX_FORWARDED: usize = 1024;

/// How a forwarded call is being served.
pub enum Forwarded {
    /// By a task (it waits for its callee): aborting it cancels the call.
    Task(AbortHandle),
    /// In the callee's call table, as call `id` of that session.
    Direct {
        /// The callee's session.
        callee: Weak<Session>,
        /// The call's id there.
        id: CallId,
    },
}

impl Forwarded {
    /// Stops serving it: the callee hears CANCEL, nobody is answered.
    fn cancel(self) {
        match self {
            Forwarded::Task(task) => task.abort(),
            Forwarded::Direct { callee, id } => {
                if let Some(callee) = callee.upgrade() {
                    callee.abandon(id);
                }
            }
        }
    }

    fn is(&self, served: Served) -> bool {
        match (self, served) {
            (Forwarded::Task(task), Served::Task(id)) => task.id() == id,
            (Forwarded::Direct { id, .. }, Served::Direct(other)) => *id == other,
            _ => false,
        }
    }
}

/// Which serving of a forwarded call has ended (ids may be reused by the
/// caller, so the entry must be the same serving to be removed).
#[derive(Debug, Clone, Copy)]
pub enum Served {
    /// The task with this id.
    Task(tokio::task::Id),
    /// The callee's call with this id.
    Direct(CallId),
}

impl Session {
    fn forwarded(&self) -> std::sync::MutexGuard<'_, iglu_bus::CallIdMap<Forwarded>> {
        self.forwarded.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps call `id`, served as `how`; false (and a task is aborted) if
    /// the session ended, already has [`MAX_FORWARDED`] of them, or already
    /// has a call with this id in flight (ids are the caller's).
    pub fn track_forwarded(&self, id: CallId, how: Forwarded) -> bool {
        let refused = {
            let mut forwarded = self.forwarded();
            if self.is_closed() || forwarded.len() >= MAX_FORWARDED || forwarded.contains_key(&id) {
                Some(how)
            } else {
                forwarded.insert(id, how);
                None
            }
        };
        match refused {
            Some(how) => {
                if let Forwarded::Task(task) = how {
                    task.abort();
                }
                false
            }
            None => true,
        }
    }

    /// Call `id`, served as `served`, has its answer: true if it was still
    /// tracked (and now is not), so the answer is to be sent. An entry of
    /// another call under the same id (a reused id) is left alone.
    pub fn forwarded_done(&self, id: &CallId, served: Served) -> bool {
        let mut forwarded = self.forwarded();
        if forwarded.get(id).is_some_and(|f| f.is(served)) {
            forwarded.remove(id);
            true
        } else {
            false
        }
    }

    /// Whether call `id` is in flight already.
    pub fn forwarding(&self, id: &CallId) -> bool {
        self.forwarded().contains_key(id)
    }

    /// The plugin cancelled call `id`: the callee hears CANCEL. False if
    /// there was no such call.
    pub fn cancel_forwarded(&self, id: &CallId) -> bool {
        // Taken out first, cancelled after: the callee's side may call back
        // into this map.
        let taken = self.forwarded().remove(id);
        match taken {
            Some(how) => {
                how.cancel();
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
        let all: Vec<Forwarded> = self.forwarded().drain().map(|(_, f)| f).collect();
        for how in all {
            how.cancel();
        }
    }
}

/// A direct entry for call `id` of `callee`.
pub fn direct(callee: &Arc<Session>, id: CallId) -> Forwarded {
    Forwarded::Direct {
        callee: Arc::downgrade(callee),
        id,
    }
}
