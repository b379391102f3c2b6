//! A host without processes or sockets, for unit tests: the real router,
//! registry, sessions and events over the in-memory transport, and plugins
//! that are scripted peers on it. Time is tokio's (tests pause it).

#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use iglu_bus::handshake::{COOKIE_VALUE, PROTOCOL_VERSIONS};
use iglu_bus::transport::{DealerConnection, RouterEndpoint};
use iglu_bus::{BusError, Hello, Manifest, Message};

use crate::config::{Config, PluginSpec};
use crate::plugin::handle::Inbox;
use crate::plugin::registry::PluginKind;
use crate::plugin::state::PluginState;
use crate::plugin::transition::Transition;
use crate::router;
use crate::shared::Shared;

/// The token every test plugin's launch expects.
pub const TOKEN: &str = "a-test-token-of-enough-length";

/// The parts of a host, its router running on `mem://<name>`.
pub struct Rig {
    pub shared: Arc<Shared>,
    pub inboxes: HashMap<String, Inbox>,
}

impl Rig {
    /// A host whose config is `toml`, knowing `plugins` (each Starting with [`TOKEN`]).
    pub async fn start(name: &str, toml: &str, plugins: &[&str]) -> Rig {
        let config = Config::parse(toml, Path::new("/nonexistent/test.toml")).unwrap();
        let endpoint = format!("mem://{name}");
        let socket = RouterEndpoint::bind_capped(&endpoint, config.router_caps())
            .await
            .unwrap();
        let shared = Shared::new(
            config,
            endpoint,
            socket.outbound,
            tokio::runtime::Handle::current(),
            std::sync::Arc::new(crate::store::Store::in_memory().unwrap()),
            std::sync::Arc::new(
                crate::settings::Settings::load(&Default::default(), None).unwrap(),
            ),
            std::sync::Arc::new(crate::limits::cgroup::Cgroups::none("unit tests")),
        );
        let mut inboxes = HashMap::new();
        for id in plugins {
            let spec = PluginSpec::new(id, "/nonexistent".into());
            shared
                .registry
                .insert(id, PluginKind::Managed(spec), PluginState::Stopped);
            shared.events.subscriptions.add_plugin(id);
            inboxes.insert((*id).to_owned(), shared.handles.open(id));
            shared.registry.transition(
                id,
                Transition::Starting {
                    token: TOKEN.to_owned(),
                    after_crash: false,
                },
            );
        }
        tokio::spawn(router::run(shared.clone(), socket.inbound, socket.events));
        Rig { shared, inboxes }
    }

    /// A scripted plugin connected to this host (no HELLO sent yet).
    pub async fn connect(&self) -> Peer {
        Peer(
            DealerConnection::connect(&self.shared.endpoint)
                .await
                .unwrap(),
            VecDeque::new(),
        )
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
    }
}

/// A HELLO for `id` with `token`, declaring `methods`.
pub fn hello(id: &str, token: &str, methods: &[&str]) -> Hello {
    Hello {
        cookie: COOKIE_VALUE.to_owned(),
        versions: PROTOCOL_VERSIONS.to_vec(),
        plugin_id: id.to_owned(),
        token: token.to_owned(),
        manifest: Manifest {
            id: id.to_owned(),
            name: id.to_owned(),
            author: "tests".to_owned(),
            version: "1.0.0".to_owned(),
            description: "a scripted peer".to_owned(),
        },
        methods: methods.iter().map(|m| (*m).to_owned()).collect(),
        subscriptions: Vec::new(),
        receive_own: false,
        interfaces: Vec::new(),
    }
}

/// A scripted plugin: the test says what it sends and reads what it gets.
pub struct Peer(pub DealerConnection, VecDeque<Message>);

impl Peer {
    /// Sends one message.
    pub async fn send(&mut self, message: &Message) {
        self.0
            .outbound
            .send(iglu_bus::encode(message).unwrap())
            .await
            .unwrap();
    }

    /// The next message, or why there is none. A batch (several frames,
    /// one message each) is taken apart; an EVENT's body frames are not
    /// messages, so for an EVENT only its header is returned.
    pub async fn recv(&mut self) -> Result<Message, BusError> {
        if let Some(next) = self.1.pop_front() {
            return Ok(next);
        }
        let (head, rest) = self.0.inbound.recv().await?;
        let first = iglu_bus::decode(&head, usize::MAX)?;
        if !matches!(first, Message::Event(_)) {
            for frame in rest {
                self.1.push_back(iglu_bus::decode(&frame, usize::MAX)?);
            }
        }
        Ok(first)
    }

    /// The next message that is not a HEARTBEAT, within `wait`.
    pub async fn next(&mut self, wait: Duration) -> Message {
        tokio::time::timeout(wait, async {
            loop {
                match self.recv().await.unwrap() {
                    Message::Heartbeat(_) => continue,
                    other => return other,
                }
            }
        })
        .await
        .expect("a message in time")
    }

    /// Says HELLO and returns the host's answer.
    pub async fn handshake(&mut self, hello: Hello) -> Message {
        self.send(&Message::Hello(hello)).await;
        self.next(Duration::from_secs(5)).await
    }
}

/// The bytes of a MessagePack `nil`.
pub fn nil() -> Bytes {
    Bytes::from_static(&[0xc0])
}
