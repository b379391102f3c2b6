//! A session's budget of call bytes in flight.
//!
//! The host's own callers may fill at most half of a plugin's socket queue
//! with calls (`Opening::call_bytes_max`), so that a plugin that reads never
//! reaches the queue's bound, which means "not reading". A call past the
//! budget fails with `overloaded` before anything is sent.

use std::sync::atomic::Ordering;

use iglu_bus::{ErrorCode, WireError};

use super::Session;

impl Session {
    /// Takes `size` bytes of the call budget until the returned guard drops;
    /// a call always fits when none is in flight, however big.
    pub(super) fn reserve_call_bytes(&self, size: usize) -> Result<CallBytes<'_>, WireError> {
        let before = self.call_bytes.fetch_add(size, Ordering::AcqRel);
        if before > 0 && before.saturating_add(size) > self.call_bytes_max {
            self.call_bytes.fetch_sub(size, Ordering::AcqRel);
            return Err(WireError::new(
                ErrorCode::Overloaded,
                format!(
                    "plugin {} already has {before} bytes of calls in flight (the bound is {}); try again when some are answered",
                    self.plugin_id, self.call_bytes_max
                ),
            ));
        }
        Ok(CallBytes {
            session: self,
            size,
        })
    }
}

impl Session {
    /// Gives back bytes that a kept reservation ([`CallBytes::keep`]) held.
    pub(super) fn release_call_bytes(&self, size: usize) {
        self.call_bytes.fetch_sub(size, Ordering::AcqRel);
    }
}

impl CallBytes<'_> {
    /// Keeps the bytes taken past this guard: whoever holds the returned
    /// size gives them back with [`Session::release_call_bytes`].
    pub(super) fn keep(self) -> usize {
        let size = self.size;
        std::mem::forget(self);
        size
    }
}

/// A call's share of [`Session::call_bytes`], given back however the call ends.
pub(super) struct CallBytes<'a> {
    session: &'a Session,
    size: usize,
}

impl Drop for CallBytes<'_> {
    fn drop(&mut self) {
        self.session.release_call_bytes(self.size);
    }
}
