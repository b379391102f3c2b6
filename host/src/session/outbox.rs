//! A session's outgoing calls, coalesced into multi-frame ZeroMQ messages.
//!
//! Callers do not send their CALL themselves: they leave it here and a
//! flusher task, one per session, sends whatever has gathered as one
//! message (the protocol's batch: one protocol message per frame). Why:
//! `zeromq` writes each message from a writer task of its own, and with
//! callers on several threads that task woke and made one `sendto` per
//! call — measured with `iglu bench` at 64 calls in flight, 390,000
//! `sendto` in 2 s for 380,000 calls, and the host was the bottleneck.
//! When other calls are awaiting answers, the flusher yields once before
//! taking the batch, so every caller that the same burst of answers woke
//! has added its CALL by then. A call with none beside it does not come
//! here at all: the session sends it directly.
//!
//! CANCELs go through here too, so a CANCEL never overtakes its CALL.

use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use iglu_bus::transport::{PeerId, RouterOutbound};
use tokio::sync::Notify;

use crate::session::Session;

/// Most CANCELs waiting here; beyond it they are dropped. CALLs are bounded
/// by the session's call slots, but a CANCEL outlives its call's slot: with
/// a plugin that stopped reading, calls that time out one after another
/// would otherwise pile up CANCELs until its session ends. A dropped CANCEL
/// costs only work the plugin does for nobody.
const MAX_CANCELS: usize = 4096;

/// Frames waiting for the flusher.
#[derive(Default)]
pub struct Outbox {
    frames: Mutex<Vec<Bytes>>,
    ready: Notify,
}

impl Outbox {
    /// Leaves a CALL for the flusher; never waits.
    pub fn push(&self, frame: Bytes) {
        self.add(frame, usize::MAX);
    }

    /// Leaves a CANCEL for the flusher, unless [`MAX_CANCELS`] frames beyond
    /// the calls' bound already wait; false if it was dropped.
    pub fn push_cancel(&self, frame: Bytes, calls_bound: usize) -> bool {
        self.add(frame, calls_bound + MAX_CANCELS)
    }

    fn add(&self, frame: Bytes, limit: usize) -> bool {
        let first = {
            let mut frames = self.frames.lock().unwrap_or_else(|p| p.into_inner());
            if frames.len() >= limit {
                return false;
            }
            frames.push(frame);
            frames.len() == 1
        };
        if first {
            // A stored permit if the flusher is busy: no wakeup is lost.
            self.ready.notify_one();
        }
        true
    }

    fn len(&self) -> usize {
        self.frames.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn take(&self) -> Vec<Bytes> {
        std::mem::take(&mut *self.frames.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Sends the outbox's frames until the session closes. Holds the session
/// weakly: the session owns the flusher, not the other way round.
pub async fn flush(
    outbox: Arc<Outbox>,
    session: Weak<Session>,
    outbound: RouterOutbound,
    peer: PeerId,
    closed: tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            _ = closed.cancelled() => return,
            _ = outbox.ready.notified() => {}
        }
        let others_waiting = session
            .upgrade()
            .is_some_and(|s| s.calls_awaiting() > outbox.len());
        if others_waiting {
            // Answers to those wake their callers in bursts: let the
            // callers of this burst add their frames first.
            tokio::task::yield_now().await;
        }
        loop {
            let frames = outbox.take();
            if frames.is_empty() {
                break;
            }
            // Batches big enough to make one write carry many calls, small
            // enough that the plugin starts answering before the whole
            // backlog has arrived (see `iglu_bus::batch`).
            for batch in iglu_bus::batch::batches(frames) {
                // Never waits: a plugin whose socket queue is full has
                // stopped reading (the session's call budget keeps a reading
                // plugin well below the bound), and its session ends.
                let sent = outbound.try_send_frames(&peer, batch);
                if let Err(e) = sent {
                    if let Some(session) = session.upgrade() {
                        session.send_failed(e);
                    }
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use iglu_bus::transport::{DealerConnection, RouterEndpoint};
    use std::time::Duration;

    /// Over real sockets: frames pushed while the flusher is busy arrive in
    /// order, several per message, never more than `MAX_FRAMES_PER_MESSAGE` in one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn frames_arrive_in_order_in_bounded_batches() {
        let dir = std::env::temp_dir().join(format!("iglu-outbox-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let endpoint = format!("ipc://{}", dir.join("s.sock").display());
        let mut router = RouterEndpoint::bind(&endpoint).await.unwrap();
        let mut dealer = DealerConnection::connect(&endpoint).await.unwrap();
        dealer
            .outbound
            .send(Bytes::from_static(b"hi"))
            .await
            .unwrap();
        let (peer, _) = router.inbound.recv().await.unwrap();

        let outbox = Arc::new(Outbox::default());
        let closed = tokio_util::sync::CancellationToken::new();
        let flusher = tokio::spawn(flush(
            outbox.clone(),
            Weak::new(),
            router.outbound.clone(),
            peer,
            closed.clone(),
        ));
        const N: u32 = 1000;
        for i in 0..N {
            outbox.push(Bytes::from(i.to_be_bytes().to_vec()));
        }
        let mut next = 0u32;
        let mut messages = 0;
        while next < N {
            let (head, rest) = tokio::time::timeout(Duration::from_secs(10), dealer.inbound.recv())
                .await
                .expect("the flusher sends everything pushed")
                .unwrap();
            messages += 1;
            assert!(
                rest.len() < iglu_bus::MAX_FRAMES_PER_MESSAGE,
                "{} frames in one message",
                rest.len() + 1
            );
            for frame in std::iter::once(head).chain(rest) {
                assert_eq!(frame.as_ref(), next.to_be_bytes(), "out of order");
                next += 1;
            }
        }
        assert!(
            messages < N as usize,
            "no batching: {messages} messages for {N} frames"
        );
        // CANCELs are bounded even while nothing is flushed.
        let stalled = Outbox::default();
        let taken = (0..10_000)
            .filter(|_| stalled.push_cancel(Bytes::from_static(b"c"), 16))
            .count();
        assert_eq!(taken, 16 + MAX_CANCELS);
        closed.cancel();
        tokio::time::timeout(Duration::from_secs(10), flusher)
            .await
            .expect("the flusher ends when the session closes")
            .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
