//! What a plugin is allowed, enforced by the host (not by the SDK): the
//! topic filters it may publish to and subscribe to, and the host API
//! methods it may use (who it may call is `calls`, checked by the router).
//! A plugin with no `permissions` in the config may do all of these, as
//! before; one with `permissions` may do only what they list. A refusal is
//! `permission_denied`, naming what is missing, and is counted.

use iglu_bus::topic::matches;
use iglu_bus::{ErrorCode, WireError};
use serde::{Deserialize, Serialize};

/// A plugin's grants, as the config (or, later, a package's approved
/// manifest) gives them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    /// Topic filters it may publish to (a topic must match one).
    #[serde(default)]
    pub publish: Vec<String>,
    /// Topic filters it may subscribe to (a subscription must lie within one).
    #[serde(default)]
    pub subscribe: Vec<String>,
    /// Host API methods it may call: a name (`kv.get`), a group (`kv.*`)
    /// or `*`. `host.info` and `status.report` are always allowed.
    #[serde(default)]
    pub host_api: Vec<String>,
}

impl Grants {
    /// Whether it may call host method `method`.
    pub fn allows_method(&self, method: &str) -> bool {
        method == "host.info"
            || method == "status.report"
            || self.host_api.iter().any(|p| match p.strip_suffix('*') {
                Some("") => true,
                Some(group) => method.starts_with(group),
                None => p == method,
            })
    }

    /// Whether it may publish on `topic`.
    pub fn allows_publish(&self, topic: &str) -> bool {
        self.publish.iter().any(|f| matches(f, topic))
    }

    /// Whether it may subscribe with `filter`: every topic the filter
    /// matches must be matched by a granted filter.
    pub fn allows_subscribe(&self, filter: &str) -> bool {
        self.subscribe.iter().any(|g| covers(g, filter))
    }
}

/// Whether every topic `inner` matches is matched by `outer` (MQTT `+`, `#`).
pub fn covers(outer: &str, inner: &str) -> bool {
    let mut o = outer.split('/');
    let mut i = inner.split('/');
    loop {
        match (o.next(), i.next()) {
            (Some("#"), _) => return true,
            (None, None) => return true,
            (Some("+"), Some(level)) if level != "#" => {}
            (Some(a), Some(b)) if a == b && a != "+" && a != "#" => {}
            _ => return false,
        }
    }
}

/// The error for a refusal: `permission_denied`, naming the permission.
pub fn denied(plugin: &str, permission: &str, what: &str) -> WireError {
    WireError::new(
        ErrorCode::PermissionDenied,
        format!("plugin {plugin} lacks the permission {permission} for {what}: grant it in the plugin's permissions"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscription_must_lie_within_a_granted_filter() {
        assert!(covers("home/#", "home/+/motion"));
        assert!(covers("home/#", "home/#"));
        assert!(covers("home/+/motion", "home/kitchen/motion"));
        assert!(covers("home/+/motion", "home/+/motion"));
        assert!(!covers("home/+/motion", "home/#"));
        assert!(!covers("home/+/motion", "home/+/+"));
        assert!(!covers("home/kitchen/motion", "home/+/motion"));
        assert!(!covers("home/+", "home/a/b"));
        assert!(!covers("home", "home/a"));
        assert!(covers("#", "$iglu/plugins/x/state"));
        let g = Grants {
            publish: vec!["home/+/light/state".into()],
            subscribe: vec!["home/+/light/set".into()],
            host_api: vec!["kv.*".into(), "events.publish".into()],
        };
        assert!(g.allows_publish("home/hall/light/state"));
        assert!(!g.allows_publish("home/hall/motion"));
        assert!(g.allows_method("kv.set") && g.allows_method("host.info"));
        assert!(g.allows_method("events.publish") && !g.allows_method("events.subscribe"));
        assert!(!g.allows_method("plugins.call"));
    }
}
