//! How a plugin's process is run: one small interface, one implementation
//! per way of running (after go-plugin's `runner.Runner` and
//! `AttachedRunner`).
//!
//! The supervisor ([`crate::plugin::supervisor`]) drives any [`Runner`]
//! through the same loop: start, watch, stop, restart per policy. A child
//! process of the host is a [`child::ChildRunner`]; a plugin that runs
//! elsewhere and connects by itself is an [`attached::AttachedRunner`],
//! whose restart command (if any) is how it is started again. A container
//! or sandboxed runner is one more implementation.

pub mod attached;
pub mod child;
pub mod output;
pub mod process;

use std::future::Future;
use std::time::Duration;

use crate::session::Loss;

/// Starting, watching and stopping one plugin's process.
///
/// Every method that waits is cancel-safe: the supervisor waits on several
/// at once and goes on with whichever finishes first.
pub trait Runner: Send + 'static {
    /// The secret the next launch's HELLO must carry: fresh for each launch
    /// of a child, fixed (configured) for a plugin that connects by itself.
    fn token(&mut self) -> String;

    /// Starts a launch whose HELLO will carry `token`; `after_crash` when
    /// it follows a crash. Returns the process id if there is one to show.
    fn start(
        &mut self,
        token: &str,
        after_crash: bool,
    ) -> impl Future<Output = Result<Option<u32>, String>> + Send;

    /// How long a started launch has to finish its handshake; `None` waits
    /// as long as it takes (a plugin that connects when it is ready).
    fn handshake_deadline(&self) -> Option<Duration>;

    /// Resolves when the process ended by itself, with how, in words.
    /// Never resolves if there is no process to watch.
    fn exited(&mut self) -> impl Future<Output = String> + Send;

    /// After its session was lost: makes sure the process is gone (waiting
    /// a little for it to exit by itself, so the cause can be named) and
    /// says how the launch ended.
    fn reap(&mut self, loss: Loss) -> impl Future<Output = String> + Send;

    /// Ends the launch on request. GOODBYE has been sent when
    /// `said_goodbye`: the process gets `grace` to exit by itself, then is
    /// forced. Says how it ended.
    fn stop(&mut self, grace: Duration, said_goodbye: bool) -> impl Future<Output = String> + Send;

    /// Ends the process now, if there is one.
    fn kill(&mut self) -> impl Future<Output = ()> + Send;

    /// Whether the last process ended with success (exit code 0): with a
    /// GOODBYE before it, the plugin left cleanly and is not a crash.
    fn exited_cleanly(&self) -> bool {
        false
    }

    /// Whether the host can start it again after a crash (a child: always;
    /// an attached plugin: only with a restart command).
    fn restarts(&self) -> bool;

    /// A runner for another version of the same plugin, started beside
    /// this one during an upgrade; `None` where the host cannot (a plugin
    /// that runs elsewhere is upgraded where it runs).
    fn successor(&self, _spec: &crate::config::PluginSpec) -> Option<Self>
    where
        Self: Sized,
    {
        None
    }

    /// Whether the plugin may connect again by itself, with no start from
    /// the host: its token stays valid while it is down, and the host's
    /// shutdown leaves it running, to reconnect to the next host.
    fn reconnects(&self) -> bool;
}
