//! What the host holds to act on one plugin: its supervisor's channels and
//! task. Facts about the plugin are in the registry; these are the means.

use std::collections::BTreeMap;
use std::sync::Mutex;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::config::PluginSpec;
use crate::error::HostError;
use crate::session::SessionNews;

/// Depth of a supervisor's command and news queues. Each plugin sees a
/// handful of news per launch; commands come from people.
pub const QUEUE: usize = 16;

/// Requests to a supervisor, each answered when done.
#[derive(Debug)]
pub enum Command {
    /// Start it (also out of Failed).
    Start(oneshot::Sender<()>),
    /// Stop it and keep it stopped.
    Stop(oneshot::Sender<()>),
    /// Stop it and start it again.
    Restart(oneshot::Sender<()>),
    /// Run this new version of it instead, switching its traffic over
    /// with no failed call (see [`super::supervisor`]).
    Upgrade(Box<PluginSpec>, oneshot::Sender<Result<Upgraded, String>>),
}

/// How an upgrade went.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Upgraded {
    /// From the command to the new version's handshake, in ms (0 if the
    /// plugin was not running: its next start runs the new version).
    pub started_ms: f64,
    /// How long the switch itself took (traffic from one session to the
    /// other), in ms.
    pub switch_ms: f64,
    /// From the switch to the old version's exit, in ms.
    pub drained_ms: f64,
    /// Whether traffic was switched between two running versions.
    pub switched: bool,
}

/// One plugin's channels and supervisor task.
pub struct Handle {
    commands: mpsc::Sender<Command>,
    news: mpsc::Sender<SessionNews>,
    task: Option<JoinHandle<()>>,
}

/// The supervisor's ends of a new handle's channels.
pub struct Inbox {
    /// Commands from people and embedders.
    pub commands: mpsc::Receiver<Command>,
    /// News from the plugin's sessions.
    pub news: mpsc::Receiver<SessionNews>,
}

/// Every plugin's handle, by id.
#[derive(Default)]
pub struct Handles {
    handles: Mutex<BTreeMap<String, Handle>>,
}

impl Handles {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Handle>> {
        self.handles.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the handle of plugin `id`; returns its supervisor's inbox.
    pub fn open(&self, id: &str) -> Inbox {
        let (commands, commands_rx) = mpsc::channel(QUEUE);
        let (news, news_rx) = mpsc::channel(QUEUE);
        self.lock().insert(
            id.to_owned(),
            Handle {
                commands,
                news,
                task: None,
            },
        );
        Inbox {
            commands: commands_rx,
            news: news_rx,
        }
    }

    /// Keeps the supervisor task of plugin `id`, for shutdown to wait on.
    pub fn set_task(&self, id: &str, task: JoinHandle<()>) {
        if let Some(h) = self.lock().get_mut(id) {
            h.task = Some(task);
        }
    }

    /// Takes plugin `id`'s handle out: its supervisor, its command channel
    /// closed, ends; the task is returned to be waited for.
    pub fn remove(&self, id: &str) -> Option<JoinHandle<()>> {
        self.lock().remove(id).and_then(|h| h.task)
    }

    /// Where the sessions of plugin `id` send their news.
    pub fn news(&self, id: &str) -> Option<mpsc::Sender<SessionNews>> {
        self.lock().get(id).map(|h| h.news.clone())
    }

    /// Every supervisor task, taken out (at shutdown).
    pub fn take_tasks(&self) -> Vec<JoinHandle<()>> {
        self.lock()
            .values_mut()
            .filter_map(|h| h.task.take())
            .collect()
    }

    fn sender(&self, id: &str) -> Result<mpsc::Sender<Command>, HostError> {
        self.lock()
            .get(id)
            .map(|h| h.commands.clone())
            .ok_or_else(|| HostError::UnknownPlugin(id.to_owned()))
    }

    /// Asks a plugin's supervisor to upgrade it to `spec`, and waits for
    /// the outcome: how it went, or why the old version still runs.
    pub async fn upgrade(
        &self,
        id: &str,
        spec: PluginSpec,
    ) -> Result<Result<Upgraded, String>, HostError> {
        let tx = self.sender(id)?;
        let (done, wait) = oneshot::channel();
        tx.send(Command::Upgrade(Box::new(spec), done))
            .await
            .map_err(|_| HostError::Supervisor(id.to_owned()))?;
        wait.await.map_err(|_| HostError::Supervisor(id.to_owned()))
    }

    /// Sends a command to a plugin's supervisor and waits until it is carried out.
    pub async fn command(
        &self,
        id: &str,
        make: fn(oneshot::Sender<()>) -> Command,
    ) -> Result<(), HostError> {
        let tx = self.sender(id)?;
        let (done, wait) = oneshot::channel();
        tx.send(make(done))
            .await
            .map_err(|_| HostError::Supervisor(id.to_owned()))?;
        wait.await.map_err(|_| HostError::Supervisor(id.to_owned()))
    }
}
