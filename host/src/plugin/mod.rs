//! Plugins as the host keeps them: facts with one owner ([`registry`],
//! changed only by [`transition`]s between [`state`]s), the means to act
//! on each ([`handle`]), its own word on its health ([`health`]), and the one loop that keeps each running
//! ([`supervisor`], under its [`restart_policy`]); [`status`] shows it all.

pub mod handle;
pub mod health;
pub mod registry;
pub mod restart_policy;
pub mod state;
pub mod status;
pub mod supervisor;
pub mod transition;
