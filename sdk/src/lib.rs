//! Write an Iglu plugin in Rust.
//!
//! ```no_run
//! use iglu_sdk::{Context, HandlerError, Manifest, Plugin};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize)]
//! struct Greet { name: String }
//! #[derive(Serialize)]
//! struct Greeting { text: String }
//!
//! fn main() -> std::process::ExitCode {
//!     Plugin::new(Manifest {
//!         id: "greeter".into(),
//!         name: "Greeter".into(),
//!         author: "you".into(),
//!         version: "0.1.0".into(),
//!         description: "Says hello".into(),
//!     })
//!     .method("greet", |_ctx: Context, args: Greet| async move {
//!         Ok::<_, HandlerError>(Greeting { text: format!("hello, {}", args.name) })
//!     })
//!     .serve()
//! }
//! ```
//!
//! How the crate is laid out, in the order a call flows through it:
//!
//! - [`plugin`]: the builder a plugin author uses, and [`Plugin::serve`],
//!   which reads the launch environment and runs everything.
//! - [`launch`]: what the host put in the environment; a binary run by hand
//!   says it is a plugin and exits 1.
//! - `link`: connect, handshake, and (external plugins) reconnect with
//!   backoff, resending unanswered calls to the host.
//! - `connection`: the I/O loop of one connection, on its own thread and
//!   runtime so that busy handlers never delay a heartbeat: receive CALLs and
//!   hand them to the handlers, send replies (batched) and heartbeats, notice
//!   a silent host, drain on SIGTERM/SIGINT or GOODBYE (`connection::incoming`
//!   handles what the host sends). What it serves with is in `service`, what
//!   handlers and host calls hand it in `outgoing`; a call's answer becomes a
//!   frame (within the host's size cap) in `answer`.
//! - [`handler`]: typed methods turned into byte-in/byte-out handlers that
//!   catch panics and honour deadlines.
//! - [`events`]: events delivered one at a time, in order, paced by credit;
//!   gaps from the host's queue overflowing are reported.
//! - [`context`] and [`host`]: what a handler gets: its plugin id and a
//!   client for the host API (`host.info`, `kv.*`, `events.*`), whose
//!   argument and result types are [`host_api`], shared with the host.
//! - [`error`]: the errors a plugin author sees.
#![deny(missing_docs)]

mod answer;
mod connection;
pub mod context;
pub mod error;
pub mod events;
pub mod handler;
pub mod host;
pub mod interface;
pub mod launch;
mod link;
pub mod logging;
mod on_connect;
mod outgoing;
pub mod plugin;
mod service;
pub mod settings;
mod signals;
mod ticker;

pub use context::Context;
pub use error::{CallError, HandlerError, SdkError};
pub use events::Event;
pub use host::HostClient;
/// The host API's argument and result types, and its method names: one
/// definition shared with the host, for raw calls with [`HostClient::call`].
pub use iglu_bus::host_api;
pub use iglu_bus::{ErrorCode, Manifest, WireError};
/// Declares an interface: see [`mod@interface`] and the `iglu-macros` crate.
pub use iglu_macros::interface;
pub use plugin::Plugin;
