//! Interfaces: a Rust trait declared once (with `#[iglu_sdk::interface]`)
//! as the contract between a plugin that implements it and whoever calls it
//! (an embedding program, another plugin). This is the part both sides
//! share at run time: what a plugin announces in HELLO ([`InterfaceInfo`]),
//! how a typed call is named and answered on the wire, the version rule,
//! the typed error a caller gets ([`InterfaceError`]), and the one thing a
//! caller must be able to do ([`Caller`]).
//!
//! On the wire, method `m` of interface `a.b` is the method `a.b.m`; its
//! arguments are a map of the trait method's parameters by name; its
//! answer is a REPLY whose result is `{"ok": R}` or `{"err": E}` (the
//! interface's own error is a value, not a transport failure). Transport
//! failures (timeout, crash, not running...) are ERRORs as for any call.

use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use crate::error::{ErrorCode, WireError};

/// An interface as its declaration names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InterfaceId {
    /// Dotted name, e.g. `iglu.thermostat`.
    pub name: &'static str,
    /// Semantic version, e.g. `1.2.0`.
    pub version: &'static str,
}

/// An interface as a plugin announces it in HELLO.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceInfo {
    /// Dotted name.
    pub name: String,
    /// Semantic version of what the plugin implements.
    pub version: String,
    /// Its methods and their shapes.
    pub methods: Vec<MethodShape>,
}

/// One method of an interface: its parameters, result and error, as the
/// Rust types are written in the declaration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MethodShape {
    /// The method's own name (on the wire: `<interface>.<name>`).
    pub name: String,
    /// Parameters in order: name and type.
    pub args: Vec<Field>,
    /// The type of a successful result.
    pub result: String,
    /// The interface's error type.
    pub error: String,
}

/// A named, typed parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    /// Its name.
    pub name: String,
    /// Its type, as written.
    #[serde(rename = "type")]
    pub ty: String,
}

/// The wire name of `method` of `interface`.
pub fn method_name(interface: &str, method: &str) -> String {
    format!("{interface}.{method}")
}

/// The answer of an interface method, as it travels in REPLY.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer<R, E> {
    /// It succeeded.
    Ok(R),
    /// It failed with the interface's own error.
    Err(E),
}

/// Whether an implementation of version `offered` serves a caller built
/// against `wanted`: the same major version (for 0.x, the same minor), and
/// at least the caller's minor (and patch) — adding a method or an optional
/// field is a minor version, compatible both ways for what both know.
pub fn compatible(wanted: &str, offered: &str) -> bool {
    let (Some(w), Some(o)) = (parse(wanted), parse(offered)) else {
        return false;
    };
    if w.0 != o.0 || (w.0 == 0 && w.1 != o.1) {
        return false;
    }
    (o.1, o.2) >= (w.1, w.2)
}

/// `major.minor.patch`; missing parts count as 0.
fn parse(version: &str) -> Option<(u64, u64, u64)> {
    let mut parts = version.trim().split('.').map(|p| p.parse::<u64>().ok());
    let major = parts.next()??;
    let minor = parts.next().unwrap_or(Some(0))?;
    let patch = parts.next().unwrap_or(Some(0))?;
    if parts.next().is_some() {
        return None;
    }
    Some((major, minor, patch))
}

/// Whether `requirement` (`name@^1.1`, `name@1.2.0` or `name`) is met by `offered`.
pub fn satisfies(requirement: &str, offered: &[InterfaceInfo]) -> bool {
    let (name, version) = match requirement.split_once('@') {
        Some((n, v)) => (n, Some(v.trim_start_matches('^'))),
        None => (requirement, None),
    };
    offered
        .iter()
        .any(|i| i.name == name && version.is_none_or(|v| compatible(v, &i.version)))
}

/// Why a typed call failed: the plugin's own error, or one of the ways a
/// call can fail, each its own case.
#[derive(Debug, thiserror::Error)]
pub enum InterfaceError<E> {
    /// The plugin answered with the interface's own error.
    #[error("the plugin's error: {0:?}")]
    Plugin(E),
    /// The deadline passed (the callee was told to drop the work).
    #[error("{0}")]
    Timeout(String),
    /// The callee died with the call in flight.
    #[error("{0}")]
    Crashed(String),
    /// The callee is not running (stopped, failed, restarting).
    #[error("{0}")]
    NotRunning(String),
    /// No plugin has that id.
    #[error("{0}")]
    UnknownPlugin(String),
    /// The plugin does not implement this interface.
    #[error("{0}")]
    NotImplemented(String),
    /// It implements a version this client cannot use; nothing was sent.
    #[error("{0}")]
    Incompatible(String),
    /// The caller may not call that plugin.
    #[error("{0}")]
    Forbidden(String),
    /// Too much in flight; nothing was sent.
    #[error("{0}")]
    Overloaded(String),
    /// Arguments or answer did not encode or decode (a bug on one side).
    #[error("{0}")]
    Codec(String),
    /// Another failure, with its wire code.
    #[error("{code}: {message}")]
    Other {
        /// The wire code.
        code: ErrorCode,
        /// The sentence.
        message: String,
    },
}

impl<E> InterfaceError<E> {
    /// The wire code of the case (`handler_error` for the plugin's own error).
    pub fn code(&self) -> ErrorCode {
        match self {
            InterfaceError::Plugin(_) => ErrorCode::HandlerError,
            InterfaceError::Timeout(_) => ErrorCode::Timeout,
            InterfaceError::Crashed(_) => ErrorCode::PluginCrashed,
            InterfaceError::NotRunning(_) => ErrorCode::NotRunning,
            InterfaceError::UnknownPlugin(_) => ErrorCode::UnknownPlugin,
            InterfaceError::NotImplemented(_) => ErrorCode::NotImplemented,
            InterfaceError::Incompatible(_) => ErrorCode::Incompatible,
            InterfaceError::Forbidden(_) => ErrorCode::Forbidden,
            InterfaceError::Overloaded(_) => ErrorCode::Overloaded,
            InterfaceError::Codec(_) => ErrorCode::BadArguments,
            InterfaceError::Other { code, .. } => *code,
        }
    }

    /// Sorts a failed call into its case.
    pub fn from_wire(e: WireError) -> Self {
        match e.code {
            ErrorCode::Timeout => InterfaceError::Timeout(e.message),
            ErrorCode::PluginCrashed => InterfaceError::Crashed(e.message),
            ErrorCode::NotRunning => InterfaceError::NotRunning(e.message),
            ErrorCode::UnknownPlugin => InterfaceError::UnknownPlugin(e.message),
            ErrorCode::NotImplemented | ErrorCode::MethodNotFound => {
                InterfaceError::NotImplemented(e.message)
            }
            ErrorCode::Incompatible => InterfaceError::Incompatible(e.message),
            ErrorCode::Forbidden => InterfaceError::Forbidden(e.message),
            ErrorCode::Overloaded => InterfaceError::Overloaded(e.message),
            ErrorCode::BadArguments => InterfaceError::Codec(e.message),
            code => InterfaceError::Other {
                code,
                message: e.message,
            },
        }
    }
}

/// Decodes a REPLY's result into the method's answer.
pub fn decode_answer<R: DeserializeOwned, E: DeserializeOwned>(
    result: Result<Bytes, WireError>,
) -> Result<R, InterfaceError<E>> {
    let bytes = result.map_err(InterfaceError::from_wire)?;
    match rmp_serde::from_slice::<Answer<R, E>>(&bytes) {
        Ok(Answer::Ok(r)) => Ok(r),
        Ok(Answer::Err(e)) => Err(InterfaceError::Plugin(e)),
        Err(e) => Err(InterfaceError::Codec(format!(
            "the answer does not decode into the interface's types: {e}"
        ))),
    }
}

/// Checks what `plugin` announced against the interface a client was built
/// for: the error to give before any call is sent, if any.
pub fn check(
    plugin: &str,
    name: &str,
    version: &str,
    offered: &[InterfaceInfo],
) -> Result<(), WireError> {
    match offered.iter().find(|i| i.name == name) {
        Some(i) if compatible(version, &i.version) => Ok(()),
        Some(i) => Err(WireError::new(
            ErrorCode::Incompatible,
            format!(
                "plugin {plugin} implements {} {}, and this client needs {name} {version} (same major version, at least its minor)",
                i.name, i.version
            ),
        )),
        None => Err(WireError::new(
            ErrorCode::NotImplemented,
            format!(
                "plugin {plugin} does not implement {name}; it implements: {}",
                if offered.is_empty() {
                    "no interface".to_owned()
                } else {
                    offered
                        .iter()
                        .map(|i| format!("{} {}", i.name, i.version))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ),
        )),
    }
}

/// What a typed client calls through: the embedding host's client, or a
/// plugin's host client (which calls through the host). Dropping the
/// returned future cancels the call on the callee.
pub trait Caller: Send + Sync {
    /// Calls `method` of `interface` on `plugin` with encoded `args`.
    fn call_interface<'a>(
        &'a self,
        plugin: &'a str,
        interface: &'a InterfaceId,
        method: &'a str,
        args: Vec<u8>,
        deadline: Duration,
    ) -> BoxFuture<'a, Result<Bytes, WireError>>;
}

impl InterfaceId {
    /// The same, owned, as a caller names it on the wire.
    pub fn to_ref(&self) -> InterfaceRef {
        InterfaceRef {
            name: self.name.to_owned(),
            version: self.version.to_owned(),
        }
    }
}

/// The interface a caller names in a `plugins.call`, so the host checks
/// the callee's version before forwarding anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceRef {
    /// Dotted name.
    pub name: String,
    /// The version the caller was built against.
    pub version: String,
}

/// What the host API's typed client calls through: a plugin's link to
/// the host. `deadline` is the client's own, if it was given one.
pub trait HostCaller: Send + Sync {
    /// How a call fails for this caller.
    type Error;
    /// Calls host method `method` with encoded `args`; the answer's result.
    fn call_host<'a>(
        &'a self,
        method: &'static str,
        args: Vec<u8>,
        deadline: Option<Duration>,
    ) -> BoxFuture<'a, Result<Bytes, Self::Error>>;
    /// The error for arguments or a result that did not encode or decode.
    fn codec_error(&self, message: String) -> Self::Error;
}

impl<T: HostCaller + ?Sized> HostCaller for &T {
    type Error = T::Error;
    fn call_host<'a>(
        &'a self,
        method: &'static str,
        args: Vec<u8>,
        deadline: Option<Duration>,
    ) -> BoxFuture<'a, Result<Bytes, Self::Error>> {
        (**self).call_host(method, args, deadline)
    }
    fn codec_error(&self, message: String) -> Self::Error {
        (**self).codec_error(message)
    }
}

/// Reads a call's arguments map; no arguments (nil, or nothing) read as
/// an empty map, so a method whose parameters all have defaults takes them.
pub fn decode_args<T: DeserializeOwned>(args: &[u8]) -> Result<T, WireError> {
    let args = match args {
        [] | [0xc0] => &[0x80][..],
        other => other,
    };
    rmp_serde::from_slice(args)
        .map_err(|e| WireError::new(ErrorCode::BadArguments, format!("bad arguments: {e}")))
}

/// Encodes a result as the answer's document.
pub fn encode_result<T: Serialize>(value: &T) -> Result<Bytes, WireError> {
    rmp_serde::to_vec_named(value)
        .map(Bytes::from)
        .map_err(|e| WireError::new(ErrorCode::Internal, e.to_string()))
}

#[doc(hidden)]
/// What the generated code names; not part of the API.
pub mod __private {
    pub use bytes;
    pub use rmp_serde;
    pub use serde;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minor_versions_are_compatible_upwards_and_majors_not_at_all() {
        assert!(compatible("1.1.0", "1.2.0"));
        assert!(compatible("1.2.0", "1.2.0"));
        assert!(
            !compatible("1.2.0", "1.1.9"),
            "an older minor may lack a method"
        );
        assert!(!compatible("1.0.0", "2.0.0"));
        assert!(!compatible("2.0.0", "1.9.0"));
        assert!(compatible("0.3.1", "0.3.4"));
        assert!(!compatible("0.3.0", "0.4.0"), "0.x minors are majors");
        assert!(!compatible("1.x", "1.0.0"));
        let offered = vec![InterfaceInfo {
            name: "iglu.thermostat".into(),
            version: "1.2.0".into(),
            methods: vec![],
        }];
        assert!(satisfies("iglu.thermostat@^1.1", &offered));
        assert!(satisfies("iglu.thermostat", &offered));
        assert!(!satisfies("iglu.thermostat@^2", &offered));
        assert!(!satisfies("iglu.light", &offered));
    }
}
