//! The in-memory transport keeps the real one's bounds and reports.

#![allow(clippy::unwrap_used)]

use super::super::{DealerConnection, PeerEvent, RouterCaps, RouterEndpoint};
use crate::error::BusError;
use bytes::Bytes;
use std::time::Duration;

fn caps(messages: usize, bytes: usize) -> RouterCaps {
    RouterCaps {
        max_frame: 1024,
        max_message: 4096,
        queue_messages: messages,
        queue_bytes: bytes,
    }
}

#[tokio::test]
async fn frames_go_both_ways_and_a_dropped_dealer_is_reported_once() {
    let mut router = RouterEndpoint::bind_capped("mem://both-ways", caps(8, 1 << 20))
        .await
        .unwrap();
    let mut dealer = DealerConnection::connect("mem://both-ways").await.unwrap();
    dealer
        .outbound
        .send(Bytes::from_static(b"hi"))
        .await
        .unwrap();
    let (peer, frames) = router.inbound.recv().await.unwrap();
    assert_eq!(frames, [Bytes::from_static(b"hi")]);
    router
        .outbound
        .try_send_frames(
            &peer,
            vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")],
        )
        .unwrap();
    let (head, rest) = dealer.inbound.recv().await.unwrap();
    assert_eq!((head, rest.len()), (Bytes::from_static(b"a"), 1));
    drop(dealer);
    assert_eq!(
        router.events.next().await,
        Some(PeerEvent::Disconnected(peer.clone()))
    );
    assert!(matches!(
        router.outbound.try_send(&peer, Bytes::from_static(b"x")),
        Err(BusError::PeerGone)
    ));
}

#[tokio::test]
async fn a_peer_that_does_not_read_fills_its_queue_in_messages_and_bytes() {
    let router = RouterEndpoint::bind_capped("mem://full", caps(2, 10))
        .await
        .unwrap();
    let mut router = router;
    let mut dealer = DealerConnection::connect("mem://full").await.unwrap();
    dealer
        .outbound
        .send(Bytes::from_static(b"hello"))
        .await
        .unwrap();
    let (peer, _) = router.inbound.recv().await.unwrap();
    let six = Bytes::from_static(b"123456");
    // One message always fits an empty queue, then the byte bound holds.
    router.outbound.try_send(&peer, six.clone()).unwrap();
    assert!(matches!(
        router.outbound.try_send(&peer, six.clone()),
        Err(BusError::PeerQueueFull { .. })
    ));
    dealer.inbound.recv().await.unwrap();
    router
        .outbound
        .try_send(&peer, Bytes::from_static(b"1"))
        .unwrap();
    router
        .outbound
        .try_send(&peer, Bytes::from_static(b"2"))
        .unwrap();
    assert!(
        matches!(
            router.outbound.try_send(&peer, Bytes::from_static(b"3")),
            Err(BusError::PeerQueueFull { .. })
        ),
        "the message bound holds too"
    );
}

#[tokio::test]
async fn a_disconnected_peer_reads_what_was_queued_then_sees_the_end() {
    let mut router = RouterEndpoint::bind_capped("mem://hangup", caps(8, 1 << 20))
        .await
        .unwrap();
    let mut dealer = DealerConnection::connect("mem://hangup").await.unwrap();
    dealer
        .outbound
        .send(Bytes::from_static(b"hello"))
        .await
        .unwrap();
    let (peer, _) = router.inbound.recv().await.unwrap();
    router
        .outbound
        .try_send(&peer, Bytes::from_static(b"reject"))
        .unwrap();
    router.outbound.disconnect(&peer, Duration::ZERO);
    assert_eq!(
        router.events.next().await,
        Some(PeerEvent::Disconnected(peer))
    );
    let (last, _) = dealer.inbound.recv().await.unwrap();
    assert_eq!(last, Bytes::from_static(b"reject"));
    assert!(matches!(dealer.inbound.recv().await, Err(BusError::Closed)));
    assert!(matches!(
        dealer.outbound.send(Bytes::from_static(b"more")).await,
        Err(BusError::Closed)
    ));
}

#[tokio::test]
async fn an_oversized_frame_cuts_its_peer_and_nothing_is_bound_twice() {
    let mut router = RouterEndpoint::bind_capped("mem://huge", caps(8, 1 << 20))
        .await
        .unwrap();
    assert!(RouterEndpoint::bind("mem://huge").await.is_err());
    assert!(DealerConnection::connect("mem://nobody").await.is_err());
    let mut dealer = DealerConnection::connect("mem://huge").await.unwrap();
    dealer
        .outbound
        .send(Bytes::from(vec![0u8; 2048]))
        .await
        .unwrap();
    assert!(matches!(
        router.events.next().await,
        Some(PeerEvent::Disconnected(_))
    ));
}
