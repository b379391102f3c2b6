//! Plugins' logs: every line a managed plugin writes is understood
//! ([`record`]: the SDK's JSON records, or plain lines), re-emitted through
//! the host's `tracing` at its own level, target and fields ([`reemit`]),
//! and kept in the plugin's bounded ring ([`book`]) for `iglu logs` and the
//! dashboard. The level a running plugin logs at is changed with the
//! reserved method [`LOG_LEVEL_METHOD`] (`iglu log-level`).

pub mod book;
pub mod record;
pub mod reemit;

pub use book::{Line, LogBook, Query};
pub use record::{Level, Record};

/// The environment variable that asks the Rust SDK for JSON records.
pub const FORMAT_ENV: &str = "IGLU_LOG_FORMAT";

/// The reserved method a plugin built on the Rust SDK serves to change its
/// log filter at run time: `{"filter": "debug,hyper=warn"}` -> `{"filter":
/// the new one, "previous": the old one}`.
pub const LOG_LEVEL_METHOD: &str = iglu_bus::LOG_LEVEL_METHOD;

/// One line of `plugin`'s `stream`: re-emitted and kept.
pub fn line(book: &LogBook, plugin: &str, stream: &'static str, text: &str) {
    let record = record::parse(stream, text);
    reemit::emit(plugin, stream, &record);
    book.push(plugin, now_ms(), record);
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
