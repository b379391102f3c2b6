//! A plugin's own word on its health (`status.report`): what `iglu status`
//! shows beside the host's view, e.g. the MQTT bridge's link to its broker.
//! It lives in the session, so a plugin that dies takes its last word with
//! it rather than leave a stale "connected" behind.

use std::sync::Mutex;
use std::time::Instant;

use iglu_bus::host_api::MAX_STATUS_REPORT_BYTES;
use iglu_bus::{ErrorCode, WireError};
use serde::{Deserialize, Serialize};

/// Longest `state` word.
const MAX_STATE: usize = 64;

/// The last report, as `iglu status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// A short word (`connected`, `reconnecting`).
    pub state: String,
    /// A line for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// Counters and such, as the plugin gave them.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub facts: serde_json::Value,
    /// How long ago it was reported.
    pub reported_ms_ago: u64,
}

/// The slot a session keeps its plugin's last report in.
#[derive(Default)]
pub struct HealthSlot(Mutex<Option<(Instant, Health)>>);

impl HealthSlot {
    /// Takes a report (its arguments' size already checked by the caller).
    pub fn set(&self, state: String, detail: String, facts: rmpv::Value) -> Result<(), WireError> {
        let bad = |m: String| WireError::new(ErrorCode::BadArguments, m);
        if state.is_empty() || state.len() > MAX_STATE || state.chars().any(char::is_control) {
            return Err(bad(format!(
                "state must be 1-{MAX_STATE} bytes of printable text"
            )));
        }
        let facts = serde_json::to_value(&facts).map_err(|e| bad(format!("facts: {e}")))?;
        let health = Health {
            state,
            detail: detail.chars().filter(|c| !c.is_control()).collect(),
            facts,
            reported_ms_ago: 0,
        };
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), health));
        Ok(())
    }

    /// The last report, with its age.
    pub fn get(&self) -> Option<Health> {
        let slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        slot.as_ref().map(|(at, h)| Health {
            reported_ms_ago: u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX),
            ..h.clone()
        })
    }
}

/// Checks the size of a report's encoded arguments.
pub fn check_size(args: &[u8]) -> Result<(), WireError> {
    if args.len() > MAX_STATUS_REPORT_BYTES {
        return Err(WireError::new(
            ErrorCode::TooLarge,
            format!(
                "a status report is at most {MAX_STATUS_REPORT_BYTES} bytes; this one is {}",
                args.len()
            ),
        ));
    }
    Ok(())
}
