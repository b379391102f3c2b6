//! Loop rules. A bridge must never take back what it sent, nor send on what
//! it took: with several hosts (or one host and its own reflection) on one
//! broker, either would echo forever. Three guards, each enough alone in
//! the common case, together for the uncommon ones:
//!
//! 1. every subscription asks for MQTT 5 *no local*: the broker does not
//!    send this client its own publications;
//! 2. every publication carries the user property [`HOST_PROPERTY`] with
//!    this host's id, and a message carrying our own id is dropped (a
//!    broker bridge or a second client of ours reflecting it back);
//! 3. the bridge exports only bus events other plugins published: what it
//!    imported has the bridge as its source and is never exported.
//!
//! A message from another Iglu host (another id) is imported, and stops
//! here: it is never re-exported, so it crosses at most one hop.

/// The MQTT 5 user property naming the host that published a message.
pub const HOST_PROPERTY: &str = "iglu-host";

/// Whether a message's user properties say this host published it.
pub fn is_own(properties: &[(String, String)], host_id: &str) -> bool {
    properties
        .iter()
        .any(|(k, v)| k == HOST_PROPERTY && v == host_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_tag() {
        let p = |v: &str| vec![(HOST_PROPERTY.to_owned(), v.to_owned())];
        assert!(is_own(&p("hub"), "hub"));
        assert!(!is_own(&p("other"), "hub"));
        assert!(!is_own(&[], "hub"));
    }
}
