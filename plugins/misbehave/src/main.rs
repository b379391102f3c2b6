//! A plugin that misbehaves on purpose, one mode per run (go-plugin's
//! helper-process idea): it speaks the protocol through `iglu-bus` directly,
//! not through the SDK, so it can say what the SDK never would.
//!
//! Usage: `iglu-plugin-misbehave <mode>`, with the usual launch variables
//! (`IGLU_ENDPOINT`, `IGLU_TOKEN`, `IGLU_PLUGIN_ID`). Every answer from the
//! host is printed to stdout as one JSON line, and appended to the file in
//! `IGLU_TEST_REPORT` when set. Modes:
//!
//! - `bad-cookie`, `bad-version`, `bad-token`, `bad-manifest`, `unknown-plugin`:
//!   a HELLO wrong in that one way; prints the REJECT and exits 3.
//! - `garbage-hello`: a first frame that is not MessagePack; prints the REJECT, exits 3.
//! - `call-before-hello`: a CALL before any HELLO (the host must REJECT it),
//!   then a valid HELLO; then serves like `garbage`.
//! - `hello`: a valid HELLO, then serves `echo` and heartbeats.
//! - `garbage`: a valid HELLO, then an undecodable frame, an unknown message
//!   kind, a frame over the size cap and a second HELLO; prints each ERROR
//!   the host answers; then serves `echo` and heartbeats.
//! - `silent`: connects and never says anything.
//! - `huge-frame`: speaks ZMTP by hand on the ipc socket and sends a frame
//!   header claiming 2^50 bytes, before any HELLO; prints `cut` when the
//!   host closes the connection, exits 0 (2 if it never does).
//! - `endless-message`: the same, but 64 KiB frames flagged MORE without end.
//! - `flood-calls`, `flood-garbage`: a valid HELLO, then `IGLU_FLOOD`
//!   (default 150,000) valid `kv.get` host calls, or undecodable frames, sent
//!   without ever reading the socket again; prints `flooded` and then waits,
//!   still not reading, for the test to kill it. With `IGLU_FLOOD_ONCE` set
//!   to a file path, only the launch that creates that file floods; later
//!   launches serve like `hello` (so a restart can be seen to succeed).
//! - `ignore-calls`: a valid HELLO declaring `echo`, then heartbeats only:
//!   it reads every CALL and CANCEL and answers none (a plugin that ignores
//!   deadlines), so only the host's own deadline can end a call to it.
//! - `deaf-subscriber`: a valid HELLO subscribed to `#`, a CREDIT of 1,024
//!   events, then heartbeats only: it never reads an event, never
//!   acknowledges one (the slowest subscriber there can be).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use iglu_bus::handshake::{COOKIE_VALUE, PROTOCOL_VERSIONS};
use iglu_bus::transport::DealerConnection;
use iglu_bus::{Call, Heartbeat, Hello, Manifest, Message, Reply};
use serde_json::json;

fn report(line: serde_json::Value) {
    println!("{line}");
    if let Ok(path) = std::env::var("IGLU_TEST_REPORT") {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}

fn hello(mode: &str) -> Hello {
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    let mut hello = Hello {
        cookie: COOKIE_VALUE.to_owned(),
        versions: PROTOCOL_VERSIONS.to_vec(),
        plugin_id: env(iglu_bus::launch::PLUGIN_ID),
        token: env(iglu_bus::launch::TOKEN),
        manifest: Manifest {
            id: "misbehave".into(),
            name: "Misbehave".into(),
            author: "Iglu tests".into(),
            version: "0.0.0".into(),
            description: "breaks the protocol on purpose".into(),
        },
        methods: vec!["echo".into()],
        subscriptions: if mode == "deaf-subscriber" {
            vec!["#".into()]
        } else {
            Vec::new()
        },
        receive_own: false,
        interfaces: Vec::new(),
    };
    match mode {
        "bad-cookie" => hello.cookie = "not-the-cookie".into(),
        "bad-version" => hello.versions = vec![99, 100],
        "bad-token" => hello.token = "0".repeat(64),
        "bad-manifest" => hello.manifest.name = String::new(),
        "unknown-plugin" => hello.plugin_id = "no-such-plugin".into(),
        _ => {}
    }
    hello
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let endpoint = std::env::var(iglu_bus::launch::ENDPOINT).unwrap_or_default();
    if mode == "huge-frame" || mode == "endless-message" {
        return match raw_zmtp(&endpoint, &mode).await {
            Ok(()) => {
                report(json!({"event": "cut"}));
                ExitCode::SUCCESS
            }
            Err(e) => {
                report(json!({"event": "failed", "detail": e}));
                ExitCode::from(2)
            }
        };
    }
    let conn = match tokio::time::timeout(
        Duration::from_secs(10),
        DealerConnection::connect(&endpoint),
    )
    .await
    {
        Ok(Ok(c)) => c,
        other => {
            report(json!({"event": "connect_failed", "detail": format!("{:?}", other.err())}));
            return ExitCode::from(2);
        }
    };
    match run(&mode, conn).await {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            report(json!({"event": "failed", "detail": e}));
            ExitCode::from(2)
        }
    }
}

async fn run(mode: &str, mut conn: DealerConnection) -> Result<u8, String> {
    let send = |m: &Message| iglu_bus::encode(m).map_err(|e| e.to_string());
    match mode {
        "silent" => std::future::pending::<()>().await,
        "garbage-hello" => conn
            .outbound
            .send(Bytes::from_static(&[0xc1, 0xff, 0x00]))
            .await
            .map_err(|e| e.to_string())?,
        "call-before-hello" => {
            let call = Message::Call(Call {
                id: iglu_bus::CallId::new_v4(),
                method: "x".into(),
                deadline_ms: 100,
                args: Bytes::from_static(&[0xc0]),
            });
            conn.outbound
                .send(send(&call)?)
                .await
                .map_err(|e| e.to_string())?;
            conn.outbound
                .send(send(&Message::Hello(hello(mode)))?)
                .await
                .map_err(|e| e.to_string())?;
        }
        _ => conn
            .outbound
            .send(send(&Message::Hello(hello(mode)))?)
            .await
            .map_err(|e| e.to_string())?,
    }
    let max = loop {
        let (frame, _) = conn.inbound.recv().await.map_err(|e| e.to_string())?;
        match iglu_bus::decode(&frame, usize::MAX) {
            Ok(Message::Reject(r)) => {
                report(
                    json!({"event": "reject", "code": r.code.as_str(), "message": r.message, "host_versions": r.host_versions}),
                );
                return Ok(3);
            }
            Ok(Message::Welcome(w)) => {
                report(json!({"event": "welcome", "session": w.session.to_string()}));
                break w.max_message_bytes as usize;
            }
            other => report(json!({"event": "unexpected", "detail": format!("{other:?}")})),
        }
    };
    if mode.starts_with("flood-") {
        let once = std::env::var("IGLU_FLOOD_ONCE").ok();
        let first = once.as_ref().is_none_or(|path| {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .is_ok()
        });
        if first {
            return flood(mode, conn, send).await;
        }
    }
    if mode == "deaf-subscriber" {
        conn.outbound
            .send(send(&Message::Credit(iglu_bus::Credit { events: 1024 }))?)
            .await
            .map_err(|e| e.to_string())?;
        report(json!({"event": "deaf"}));
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tick.tick().await;
            conn.outbound
                .send(send(&Message::Heartbeat(Heartbeat {}))?)
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    if mode == "garbage" {
        let unknown_kind = Bytes::from_static(b"\x81\xaafrobnicate\x80");
        for frame in [
            Bytes::from_static(&[0xc1, 0xff]),
            unknown_kind,
            Bytes::from(vec![0x90u8; max + 1]),
            send(&Message::Hello(hello(mode)))?,
        ] {
            conn.outbound.send(frame).await.map_err(|e| e.to_string())?;
        }
    }
    // Serve `echo` and heartbeat until the host says goodbye or goes away.
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                conn.outbound.send(send(&Message::Heartbeat(Heartbeat {}))?).await.map_err(|e| e.to_string())?;
            }
            frame = conn.inbound.recv() => {
                let (frame, _) = frame.map_err(|e| e.to_string())?;
                match iglu_bus::decode(&frame, max) {
                    Ok(Message::Error(e)) => report(json!({"event": "error", "code": e.code.as_str(), "message": e.message})),
                    // `ignore-calls` reads every CALL and answers none.
                    Ok(Message::Call(_)) if mode == "ignore-calls" => {}
                    Ok(Message::Call(c)) => {
                        conn.outbound.send(send(&Message::Reply(Reply { id: c.id, result: c.args }))?).await.map_err(|e| e.to_string())?;
                    }
                    Ok(Message::Goodbye(_)) => return Ok(0),
                    _ => {}
                }
            }
        }
    }
}

/// Sends `IGLU_FLOOD` messages and never reads again: a plugin whose
/// socket queue on the host fills up and stays full.
async fn flood(
    mode: &str,
    mut conn: DealerConnection,
    send: impl Fn(&Message) -> Result<Bytes, String>,
) -> Result<u8, String> {
    let count: usize = std::env::var("IGLU_FLOOD")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(150_000);
    let frame = if mode == "flood-calls" {
        let args = rmp_serde::to_vec_named(&json!({"key": "k"})).map_err(|e| e.to_string())?;
        send(&Message::Call(Call {
            id: iglu_bus::CallId::new_v4(),
            method: "kv.get".into(),
            deadline_ms: 10_000,
            args: Bytes::from(args),
        }))?
    } else {
        Bytes::from_static(&[0xc1, 0xff, 0x00])
    };
    let mut sent = 0usize;
    while sent < count {
        // Batches of 64 frames, as the SDK sends them: the flood is fast.
        let n = (count - sent).min(64);
        let batch = vec![frame.clone(); n];
        if let Err(e) = conn.outbound.send_frames(batch).await {
            report(json!({"event": "flood_stopped", "sent": sent, "detail": e.to_string()}));
            break;
        }
        sent += n;
    }
    report(json!({"event": "flooded", "sent": sent}));
    // Keep the connection and never read it: the host's queue to us stays full.
    let _keep = conn;
    std::future::pending::<()>().await;
    Ok(0)
}

/// ZMTP 3.0 by hand: the greeting and a READY as a DEALER, then what
/// `mode` sends; returns once the host has closed the connection.
/// `huge-frame`: the header of a frame claiming 2^50 bytes (an uncapped
/// decoder reserves that much and the process aborts). `endless-message`:
/// 64 KiB frames flagged MORE, without end (an uncapped decoder buffers them all).
async fn raw_zmtp(endpoint: &str, mode: &str) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let path = endpoint
        .strip_prefix("ipc://")
        .ok_or_else(|| format!("not an ipc endpoint: {endpoint}"))?;
    let stream = tokio::net::UnixStream::connect(path)
        .await
        .map_err(|e| e.to_string())?;
    let (mut reader, mut writer) = stream.into_split();
    let mut greeting = [0u8; 64];
    greeting[0] = 0xff;
    greeting[9] = 0x7f;
    greeting[10] = 3;
    greeting[12..16].copy_from_slice(b"NULL");
    let mut opening = greeting.to_vec();
    let mut ready = vec![5];
    ready.extend_from_slice(b"READY");
    ready.push(11);
    ready.extend_from_slice(b"Socket-Type");
    ready.extend_from_slice(&6u32.to_be_bytes());
    ready.extend_from_slice(b"DEALER");
    opening.extend_from_slice(&[0x04, ready.len() as u8]);
    opening.extend_from_slice(&ready);
    writer
        .write_all(&opening)
        .await
        .map_err(|e| e.to_string())?;
    let attack = async {
        match mode {
            "huge-frame" => {
                let mut header = vec![0x02];
                header.extend_from_slice(&(1u64 << 50).to_be_bytes());
                header.extend_from_slice(b"and then some");
                let _ = writer.write_all(&header).await;
                std::future::pending::<()>().await
            }
            _ => {
                let mut frame = vec![0x03];
                frame.extend_from_slice(&65536u64.to_be_bytes());
                frame.resize(9 + 65536, 0x90);
                // Ends when the host closes: the write fails.
                while writer.write_all(&frame).await.is_ok() {}
            }
        }
    };
    // The host's own greeting and READY come back first; then it must hang up.
    let hung_up = async {
        let mut sink = [0u8; 1024];
        while let Ok(n) = reader.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    };
    let cut = async {
        tokio::select! {
            _ = attack => {}
            _ = hung_up => {}
        }
    };
    tokio::time::timeout(Duration::from_secs(20), cut)
        .await
        .map_err(|_| "the host kept the connection open for 20 s".to_owned())
}
