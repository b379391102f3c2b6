//! Rules of the opening exchange, shared so that host and SDK cannot disagree.

use subtle::ConstantTimeEq;

use crate::message::{Hello, Manifest};

/// Environment key of the magic cookie, as in go-plugin's `MagicCookieKey`.
pub const COOKIE_KEY: &str = "IGLU_PLUGIN";

/// The magic cookie value. It tells a plugin binary that an Iglu host started
/// it and tells the host that the peer is an Iglu plugin; it is not a secret
/// (the per-launch token is).
pub const COOKIE_VALUE: &str = "MzlK0OGpIRs";

/// Protocol versions this build speaks, oldest first.
pub const PROTOCOL_VERSIONS: &[u32] = &[1];

/// The highest version both sides speak, if any.
pub fn negotiate(ours: &[u32], theirs: &[u32]) -> Option<u32> {
    ours.iter().copied().filter(|v| theirs.contains(v)).max()
}

/// Compares two tokens in time that does not depend on where they differ,
/// so a peer cannot guess a token byte by byte from response times.
pub fn tokens_match(expected: &str, presented: &str) -> bool {
    expected.as_bytes().ct_eq(presented.as_bytes()).into()
}

/// Longest id, method name or manifest field accepted, in bytes.
const MAX_FIELD: usize = 1024;
/// Longest plugin id and method name, in bytes.
const MAX_NAME: usize = 64;
/// Most methods one plugin may declare.
const MAX_METHODS: usize = 1024;

/// Whether `id` is a valid plugin id: 1-64 of `[a-z0-9_-]`, so it is safe in
/// file names, log fields and CLI arguments.
pub fn valid_plugin_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_NAME
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Whether `name` is a valid method name: 1-64 printable ASCII characters, no spaces.
pub fn valid_method_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME && name.bytes().all(|b| b.is_ascii_graphic())
}

/// Checks the manifest and method list of a HELLO; the error is a sentence for people.
pub fn validate_manifest(manifest: &Manifest, methods: &[String]) -> Result<(), String> {
    if !valid_plugin_id(&manifest.id) {
        return Err(format!(
            "manifest id {:?} is not 1-64 characters of [a-z0-9_-]",
            manifest.id
        ));
    }
    for (field, value) in [
        ("name", &manifest.name),
        ("version", &manifest.version),
        ("author", &manifest.author),
    ] {
        if value.trim().is_empty() {
            return Err(format!("manifest {field} is empty"));
        }
        if value.len() > MAX_FIELD {
            return Err(format!("manifest {field} is longer than {MAX_FIELD} bytes"));
        }
    }
    if manifest.description.len() > MAX_FIELD {
        return Err(format!(
            "manifest description is longer than {MAX_FIELD} bytes"
        ));
    }
    if methods.len() > MAX_METHODS {
        return Err(format!("more than {MAX_METHODS} methods declared"));
    }
    if let Some(bad) = methods.iter().find(|m| !valid_method_name(m)) {
        return Err(format!(
            "method name {bad:?} is not 1-64 printable ASCII characters"
        ));
    }
    let mut seen = std::collections::HashSet::with_capacity(methods.len());
    if let Some(twice) = methods.iter().find(|m| !seen.insert(m.as_str())) {
        return Err(format!("method {twice:?} is declared twice"));
    }
    Ok(())
}

/// A HELLO's claims that need no host state: cookie and version.
/// Returns the negotiated version, or the reason the handshake must fail.
pub fn check_hello_basics(hello: &Hello) -> Result<u32, (crate::RejectCode, String)> {
    if hello.cookie != COOKIE_VALUE {
        return Err((
            crate::RejectCode::BadCookie,
            format!(
                "the magic cookie is wrong: this host speaks the Iglu plugin protocol and expects {COOKIE_KEY}={COOKIE_VALUE}"
            ),
        ));
    }
    negotiate(PROTOCOL_VERSIONS, &hello.versions).ok_or_else(|| {
        (
            crate::RejectCode::UnsupportedVersion,
            format!(
                "no common protocol version: the host speaks {:?}, the plugin speaks {:?}",
                PROTOCOL_VERSIONS, hello.versions
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_picks_highest_common() {
        assert_eq!(negotiate(&[1, 2, 3], &[2, 3, 4]), Some(3));
        assert_eq!(negotiate(&[1], &[2]), None);
        assert_eq!(negotiate(&[1], &[]), None);
    }

    #[test]
    fn tokens_compare_by_content() {
        assert!(tokens_match("abc", "abc"));
        assert!(!tokens_match("abc", "abd"));
        assert!(!tokens_match("abc", "ab"));
        assert!(!tokens_match("", "a"));
    }

    #[test]
    fn plugin_ids() {
        assert!(valid_plugin_id("echo"));
        assert!(valid_plugin_id("my_plugin-2"));
        assert!(!valid_plugin_id(""));
        assert!(!valid_plugin_id("Echo"));
        assert!(!valid_plugin_id("a/b"));
        assert!(!valid_plugin_id(&"a".repeat(65)));
    }

    #[test]
    fn manifests() {
        let good = Manifest {
            id: "echo".into(),
            name: "Echo".into(),
            author: "me".into(),
            version: "1".into(),
            description: String::new(),
        };
        assert!(validate_manifest(&good, &["echo".into()]).is_ok());
        let mut bad = good.clone();
        bad.name = " ".into();
        assert!(validate_manifest(&bad, &[]).is_err());
        assert!(validate_manifest(&good, &["has space".into()]).is_err());
    }
}
