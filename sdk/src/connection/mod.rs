//! One connection to the host, served by the I/O loop on its own thread.
//!
//! The loop owns the DEALER socket. Incoming CALLs are spawned on the
//! handler runtime (or on this thread, with inline handlers); finished calls
//! come back through `Outgoing` and leave in batches. Because this loop runs
//! on a thread of its own, handlers that keep every core busy delay a
//! heartbeat by a scheduler slice at most, never by the length of a handler.
//! What outlives a connection (and reconnecting) is in [`crate::link`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use iglu_bus::heartbeat::{Liveness, Timing};
use iglu_bus::transport::{DealerConnection, DealerOutbound, DealerStream};
use iglu_bus::{
    Batch, CallId, CallIdMap, ErrorCode, Goodbye, Heartbeat, Message, Welcome, WireError,
};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::answer::{answer_frame, error_frame};
use crate::context::Context;
use crate::error::SdkError;
use crate::events::{self, Event};
use crate::handler::run_guarded;
use crate::host::{HostClient, Pending};
use crate::launch::Launch;
use crate::link::Link;
use crate::outgoing::{Ended, Outgoing};
use crate::service::Service;
use crate::ticker::{self, Ticker};

mod incoming;

/// Answers to inline calls go out in batches of at most this many (and at
/// most `iglu_bus::batch::MAX_BATCH_BYTES`), even when more calls are
/// waiting: one write then carries many answers, and the host starts on
/// them while this loop handles the rest. Answering everything that had
/// arrived at once (up to 64) made host and plugin take turns, each idle
/// while the other worked: `iglu bench` at 64 calls in flight measured
/// 0.68x the zeromq floor with 64, 1.13x with 16.
const ANSWER_BATCH: usize = 16;

/// Most frames handled before the loop looks at its other branches
/// (heartbeats, stop) again.
const MAX_DRAIN: usize = 256;

/// After GOODBYE is queued, how long to let the socket flush before exit
/// (ZeroMQ's LINGER idea); the host does not depend on it arriving.
const LINGER: Duration = Duration::from_millis(100);

pub(crate) struct Session {
    plugin_id: Arc<str>,
    service: Arc<Service>,
    inbound: DealerStream,
    outbound: DealerOutbound,
    max_message: usize,
    host_liveness: Liveness,
    /// Calls being served, so CANCEL and the drain deadline can abort them.
    running: CallIdMap<AbortHandle>,
    pending: Pending,
    outgoing_tx: mpsc::Sender<Outgoing>,
    /// Which connection of this process this is (credits of an earlier one are stale).
    connection: u64,
    /// What every call's handler receives.
    ctx: Context,
    /// The last look for more messages found some: look again next time.
    busy: bool,
    /// Answers of inline handlers that finished at once, sent as one batch.
    answers: Batch,
    /// Events for the event task; its capacity is the credit window, so it never fills
    /// while the host honours credit.
    event_tx: mpsc::Sender<Event>,
    /// Heartbeat ticks (see [`crate::ticker`]).
    ticker: Ticker,
    /// Set once we stop taking calls: the reason and the drain deadline.
    draining: Option<(Ended, tokio::time::Instant)>,
}

impl Session {
    pub(crate) fn new(
        launch: &Launch,
        service: Arc<Service>,
        conn: DealerConnection,
        welcome: Welcome,
        ticker: ticker::Pending,
        link: &Link,
    ) -> Session {
        let timing = Timing {
            interval: Duration::from_millis(u64::from(welcome.heartbeat_ms.max(1))),
            liveness: welcome.liveness.max(1),
        };
        let outgoing_tx = link.outgoing_tx.clone();
        let pending = link.pending.clone();
        let plugin_id: Arc<str> = Arc::from(launch.plugin_id.as_str());
        let window = service.event_window.max(1);
        let (event_tx, event_rx) = mpsc::channel(window as usize);
        let ctx = Context::new(
            plugin_id.clone(),
            HostClient {
                outgoing: outgoing_tx.clone(),
                pending: pending.clone(),
                slots: Arc::new(tokio::sync::Semaphore::new(crate::host::MAX_HOST_CALLS)),
            },
            service.settings.clone(),
        );
        let events_task = events::run(
            events::Handlers {
                on_event: service.event_handler.clone(),
                on_settings: service.on_settings.clone(),
            },
            ctx.clone(),
            event_rx,
            outgoing_tx.clone(),
            window,
            link.connection,
        );
        let on_connect = service
            .on_connect
            .clone()
            .map(|h| crate::on_connect::run(h, ctx.clone()));
        for task in std::iter::once(events_task.boxed()).chain(on_connect.map(FutureExt::boxed)) {
            if service.inline_handlers {
                tokio::spawn(task);
            } else {
                service.handler_runtime.spawn(task);
            }
        }
        Session {
            plugin_id,
            service,
            inbound: conn.inbound.into_stream(),
            outbound: conn.outbound,
            max_message: welcome.max_message_bytes as usize,
            host_liveness: Liveness::new(timing, Instant::now()),
            running: CallIdMap::default(),
            pending,
            outgoing_tx,
            connection: link.connection,
            ctx,
            busy: false,
            answers: Batch::default(),
            event_tx,
            ticker: ticker.start(timing.interval),
            draining: None,
        }
    }

    pub(crate) async fn serve(mut self, link: &mut Link) -> Result<Ended, SdkError> {
        // Open the event window: the host sends nothing before it has credit.
        let window = self.service.event_window.max(1);
        self.send(iglu_bus::encode(&Message::Credit(iglu_bus::Credit {
            events: window,
        }))?)
        .await?;
        // Calls to the host that a lost connection left unanswered go again.
        let unanswered: Vec<Bytes> = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            pending
                .values_mut()
                .filter(|c| c.sent_on != 0)
                .map(|c| {
                    c.sent_on = self.connection;
                    c.frame.clone()
                })
                .collect()
        };
        for frame in unanswered {
            self.send(frame).await?;
        }
        // Made once, not per loop turn: a new `changed()` joins the channel's
        // waiter list and leaves it again, on the path of every call.
        let mut stop_rx = link.stop.clone();
        let stop = async move {
            let _ = stop_rx.changed().await;
            let name: &'static str = (*stop_rx.borrow()).unwrap_or("signal");
            name
        };
        tokio::pin!(stop);
        let result = loop {
            let drain_deadline = self.draining.as_ref().map(|(_, d)| *d);
            tokio::select! {
                Some(frame) = self.inbound.next() => {
                    let (head, rest) = frame?;
                    self.host_liveness.seen(Instant::now());
                    let mut handled = self.on_message(head, rest).await?;
                    // Under load, take whatever else has already arrived.
                    // A lone single-frame message is the sign of calls one
                    // at a time: looking again would only cost CPU.
                    let mut drain = handled > 1 || self.busy;
                    self.busy = false;
                    while drain && handled < MAX_DRAIN {
                        let Some(Some(more)) = futures::FutureExt::now_or_never(self.inbound.next()) else {
                            break;
                        };
                        let (head, rest) = more?;
                        handled += self.on_message(head, rest).await?;
                        self.busy = true;
                        drain = true;
                    }
                    self.send_answers().await?;
                }
                Some(out) = link.outgoing_rx.recv() => {
                    // Whatever else is ready goes in the same ZeroMQ message:
                    // under load one write carries many answers.
                    let mut batch = Batch::default();
                    self.on_outgoing(out, &mut batch);
                    while batch.has_room() {
                        match link.outgoing_rx.try_recv() {
                            Ok(more) => self.on_outgoing(more, &mut batch),
                            Err(_) => break,
                        }
                    }
                    if !batch.is_empty() {
                        self.outbound.send_frames(batch.take()).await?;
                    }
                }
                _ = self.ticker.tick() => {
                    self.send(iglu_bus::encode(&Message::Heartbeat(Heartbeat {}))?).await?;
                    let now = Instant::now();
                    if self.host_liveness.expired(now) {
                        break Err(SdkError::HostSilent(self.host_liveness.silent_for(now)));
                    }
                }
                name = &mut stop, if self.draining.is_none() => {
                    tracing::info!(plugin = %self.plugin_id, signal = name, "stopping: finishing calls in flight");
                    self.start_draining(Ended::Signal(name));
                }
                _ = sleep_until_opt(drain_deadline) => {
                    tracing::warn!(plugin = %self.plugin_id, calls = self.running.len(), "grace period over: abandoning calls in flight");
                    for (_, call) in self.running.drain() {
                        call.abort();
                    }
                }
            }
            if self.draining.is_some() && self.running.is_empty() {
                if let Some((ended, _)) = self.draining.take() {
                    break Ok(ended);
                }
            }
        };
        if let Ok(ended) = &result {
            let reason = match ended {
                Ended::Signal(name) => format!("plugin received {name}"),
                Ended::HostGoodbye(_) => "host said goodbye".to_owned(),
            };
            let goodbye = iglu_bus::encode(&Message::Goodbye(Goodbye { reason }))?;
            // Best effort: the host also learns of the exit from the process.
            let _ = self.outbound.send(goodbye).await;
            tokio::time::sleep(LINGER).await;
        }
        result
    }

    /// Handles one ZeroMQ message: an EVENT takes its frame pairs from
    /// `rest`; any other frames are further messages of a batch, one per
    /// frame. Returns how many frames it handled.
    async fn on_message(
        &mut self,
        head: Bytes,
        mut rest: std::collections::VecDeque<Bytes>,
    ) -> Result<usize, SdkError> {
        // Every frame counts, an EVENT batch's header/body pairs included.
        let frames = 1 + rest.len();
        self.send_full_batch().await?;
        self.on_frame(head, &mut rest).await?;
        while let Some(next) = rest.pop_front() {
            self.send_full_batch().await?;
            self.on_frame(next, &mut std::collections::VecDeque::new())
                .await?;
        }
        Ok(frames)
    }

    /// Sends the answers once there are [`ANSWER_BATCH`] of them or the
    /// batch is full by size, and lets
    /// the writer task write them before more calls are handled.
    async fn send_full_batch(&mut self) -> Result<(), SdkError> {
        if self.answers.len() >= ANSWER_BATCH || !self.answers.has_room() {
            self.send_answers().await?;
            tokio::task::yield_now().await;
        }
        Ok(())
    }

    /// Sends the answers gathered so far as one message.
    async fn send_answers(&mut self) -> Result<(), SdkError> {
        if self.answers.is_empty() {
            return Ok(());
        }
        let answers = self.answers.take();
        self.outbound.send_frames(answers).await?;
        Ok(())
    }

    fn start_draining(&mut self, why: Ended) {
        self.draining = Some((why, tokio::time::Instant::now() + self.service.grace));
    }

    /// Adds the frame `out` stands for, if it is still wanted, to `batch`.
    fn on_outgoing(&mut self, out: Outgoing, batch: &mut Batch) {
        match out {
            Outgoing::Call(id) => {
                let frame = {
                    let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                    match pending.get_mut(&id) {
                        // Already sent on this connection by the resend after reconnecting.
                        Some(c) if c.sent_on == self.connection => None,
                        Some(c) => {
                            c.sent_on = self.connection;
                            Some(c.frame.clone())
                        }
                        None => None,
                    }
                };
                if let Some(frame) = frame {
                    batch.push(frame);
                }
            }
            Outgoing::Cancel(id) => {
                if let Ok(frame) = iglu_bus::encode(&Message::Cancel(iglu_bus::Cancel { id })) {
                    batch.push(frame);
                }
            }
            Outgoing::Credit { connection, frame } => {
                if connection == self.connection {
                    batch.push(frame);
                }
            }
            Outgoing::Done { id, frame } => {
                // A call cancelled meanwhile has no entry left: its answer is not wanted.
                if self.running.remove(&id).is_some() {
                    batch.push(frame);
                }
            }
        }
    }

    async fn send(&mut self, frame: Bytes) -> Result<(), SdkError> {
        self.outbound.send(frame).await?;
        Ok(())
    }
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
