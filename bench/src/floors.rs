//! The floors Iglu is measured against, in the same run: a bare `zeromq`
//! ROUTER/DEALER echo with a MessagePack envelope (the transport floor) and
//! a bare Unix-socket echo of length-prefixed frames (the physical floor),
//! buffered on both sides so that it is a floor: it used to write each
//! frame with two unbuffered syscalls and read with two, and measured 183k
//! calls/s at 64 in flight where a buffered echo on the same machine did
//! over 1 M/s. Both ends now read through a buffer and write into one,
//! flushed when there is nothing more to write right away (the client: its
//! window is full; the echo: the next request is not already buffered).
//!
//! The echo servers run in a child process (`iglu-bench peer`), like a
//! plugin; the clients pipeline up to K requests from one task, the
//! tightest loop the transport allows, so the floor is really a floor.

use std::collections::VecDeque;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use iglu_bus::transport::{DealerConnection, RouterEndpoint};

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use super::floor_wire::{frame_buffered, Envelope, Rx, Tx, UDS_BUFFER};
use super::measure::{histogram, record, Sample};

/// Which floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Floor {
    /// zeromq ROUTER/DEALER with MessagePack.
    Zmq,
    /// Unix socket, length-prefixed frames.
    Uds,
}

/// Serves echoes until the client goes away (the `iglu-bench peer` process).
pub async fn serve(floor: Floor, address: &str) -> Result<(), String> {
    match floor {
        Floor::Zmq => {
            let mut ep = RouterEndpoint::bind(address)
                .await
                .map_err(|e| e.to_string())?;
            loop {
                let (peer, frame) = ep.inbound.recv().await.map_err(|e| e.to_string())?;
                let Some(frame) = frame.front() else { continue };
                let Ok(env) = rmp_serde::from_slice::<Envelope>(frame) else {
                    continue;
                };
                let reply = rmp_serde::to_vec_named(&env).map_err(|e| e.to_string())?;
                ep.outbound
                    .send(&peer, Bytes::from(reply))
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        Floor::Uds => {
            let _ = std::fs::remove_file(address);
            let listener = UnixListener::bind(address).map_err(|e| e.to_string())?;
            let (stream, _) = listener.accept().await.map_err(|e| e.to_string())?;
            let (r, w) = stream.into_split();
            let mut r = BufReader::with_capacity(UDS_BUFFER, r);
            let mut w = BufWriter::with_capacity(UDS_BUFFER, w);
            let mut buf = Vec::new();
            loop {
                let Ok(len) = r.read_u32().await else {
                    return Ok(());
                };
                buf.resize(len as usize, 0);
                r.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
                w.write_u32(len).await.map_err(|e| e.to_string())?;
                w.write_all(&buf).await.map_err(|e| e.to_string())?;
                // The next read would wait: send what is ready first.
                if !frame_buffered(r.buffer()) {
                    w.flush().await.map_err(|e| e.to_string())?;
                }
            }
        }
    }
}

/// One slice for a floor's client: what to run, and where to send the result.
struct FloorJob {
    floor: Floor,
    k: usize,
    size: usize,
    warmup: Duration,
    duration: Duration,
    done: oneshot::Sender<Result<Sample, String>>,
}

/// Both floors' clients, driven from a thread of their own on a
/// current_thread runtime, whatever runtime Iglu runs on: the floor is bare
/// zeromq at its best (the echo peers are single-threaded too), measured at
/// 13-20 us p50 on the Xeon VM against 25-28 us from a multi-thread runtime.
/// They live for a whole row, so their slices can take turns with Iglu's.
pub struct Floors {
    jobs: mpsc::Sender<FloorJob>,
    thread: std::thread::JoinHandle<()>,
}

impl Floors {
    /// Starts both echo peers and connects to them.
    pub async fn start(dir: &std::path::Path) -> Result<Floors, String> {
        let dir = dir.to_path_buf();
        let (jobs, mut queue) = mpsc::channel::<FloorJob>(1);
        let (ready_tx, ready) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("iglu-bench-floors".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ =
                            ready_tx.send(Err(format!("cannot start the floors' runtime: {e}")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let clients = async {
                        Ok::<_, String>((
                            FloorClient::start(Floor::Zmq, &dir).await?,
                            FloorClient::start(Floor::Uds, &dir).await?,
                        ))
                    };
                    let (mut zmq, mut uds) = match clients.await {
                        Ok(c) => {
                            let _ = ready_tx.send(Ok(()));
                            c
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    // Ends when `Floors` is dropped; the peers go with their clients.
                    while let Some(job) = queue.recv().await {
                        let client = match job.floor {
                            Floor::Zmq => &mut zmq,
                            Floor::Uds => &mut uds,
                        };
                        let sample = client.run(job.k, job.size, job.warmup, job.duration).await;
                        let _ = job.done.send(sample);
                    }
                });
            })
            .map_err(|e| format!("cannot start the floors' thread: {e}"))?;
        match ready.await {
            Ok(Ok(())) => Ok(Floors { jobs, thread }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err("the floors' thread ended before starting".into()),
        }
    }

    /// Runs one slice on `floor`.
    pub async fn run(
        &self,
        floor: Floor,
        k: usize,
        size: usize,
        warmup: Duration,
        duration: Duration,
    ) -> Result<Sample, String> {
        let (done, result) = oneshot::channel();
        let job = FloorJob {
            floor,
            k,
            size,
            warmup,
            duration,
            done,
        };
        self.jobs
            .send(job)
            .await
            .map_err(|_| "the floors' thread is gone".to_string())?;
        result
            .await
            .map_err(|_| "the floors' thread is gone".to_string())?
    }

    /// Stops the peers and waits for the thread (it has nothing left to wait on).
    pub async fn stop(self) {
        drop(self.jobs);
        let thread = self.thread;
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
}

/// Starts the echo peer process and connects to it.
pub struct FloorClient {
    _peer: tokio::process::Child,
    zmq: Option<DealerConnection>,
    uds: Option<UnixStream>,
}

impl FloorClient {
    /// Spawns `iglu-bench peer` for `floor` at an address under `dir`, and connects.
    pub async fn start(floor: Floor, dir: &Path) -> Result<FloorClient, String> {
        // A fresh address each time: a killed peer leaves its socket file behind.
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (kind, address) = match floor {
            Floor::Zmq => (
                "zmq",
                format!(
                    "ipc://{}",
                    dir.join(format!("floor-zmq-{n}.sock")).display()
                ),
            ),
            Floor::Uds => (
                "uds",
                dir.join(format!("floor-uds-{n}.sock"))
                    .display()
                    .to_string(),
            ),
        };
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let peer = tokio::process::Command::new(exe)
            .args(["peer", kind, &address])
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start the {kind} echo peer: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut client = FloorClient {
            _peer: peer,
            zmq: None,
            uds: None,
        };
        match floor {
            Floor::Zmq => {
                let conn = tokio::time::timeout(
                    Duration::from_secs(10),
                    DealerConnection::connect(&address),
                )
                .await
                .map_err(|_| "zmq floor: connect timed out".to_string())?
                .map_err(|e| e.to_string())?;
                client.zmq = Some(conn);
            }
            Floor::Uds => loop {
                match UnixStream::connect(&address).await {
                    Ok(s) => {
                        client.uds = Some(s);
                        break;
                    }
                    Err(_) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(5)).await
                    }
                    Err(e) => return Err(format!("uds floor: {e}")),
                }
            },
        }
        Ok(client)
    }

    /// Keeps `k` requests of `size` bytes in flight for `warmup + duration`.
    /// Sending and receiving run concurrently: with large payloads a client
    /// that only reads after writing K requests would deadlock with the echo.
    pub async fn run(
        &mut self,
        k: usize,
        size: usize,
        warmup: Duration,
        duration: Duration,
    ) -> Result<Sample, String> {
        let payload = vec![0x5au8; size];
        let start = Instant::now();
        let measure_from = start + warmup;
        let end = measure_from + duration;
        let slots = tokio::sync::Semaphore::new(k);
        let sent_at = std::sync::Mutex::new(VecDeque::<Instant>::with_capacity(k));
        let done_sending = std::sync::atomic::AtomicBool::new(false);
        let sent = tokio::sync::Notify::new();
        let (mut tx, mut rx) = self.halves()?;
        let writer = async {
            let mut id = 0u64;
            while Instant::now() < end {
                let permit = slots.acquire().await.map_err(|e| e.to_string())?;
                permit.forget();
                id += 1;
                // Stamp before sending: the reply may arrive before send returns.
                sent_at
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push_back(Instant::now());
                sent.notify_one();
                tx.send(id, &payload).await?;
                // The window is full (or time is up): what is buffered goes.
                if slots.available_permits() == 0 || Instant::now() >= end {
                    tx.flush().await?;
                }
            }
            tx.flush().await?;
            done_sending.store(true, std::sync::atomic::Ordering::SeqCst);
            sent.notify_one();
            Ok::<_, String>(())
        };
        let reader = async {
            let mut h = histogram();
            let mut count = 0u64;
            loop {
                let outstanding = sent_at.lock().unwrap_or_else(|p| p.into_inner()).len();
                if outstanding == 0 && done_sending.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                if outstanding == 0 {
                    sent.notified().await;
                    continue;
                }
                rx.recv().await?;
                let t = sent_at
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .pop_front();
                slots.add_permits(1);
                if let Some(t) = t {
                    if t >= measure_from && t < end {
                        record(&mut h, t.elapsed());
                        count += 1;
                    }
                }
            }
            Ok::<_, String>((h, count))
        };
        let (w, r) = tokio::join!(writer, reader);
        w?;
        let (h, count) = r?;
        Ok(Sample::new(h, count, duration))
    }

    fn halves(&mut self) -> Result<(Tx<'_>, Rx<'_>), String> {
        match (self.zmq.as_mut(), self.uds.as_mut()) {
            (Some(z), _) => Ok((Tx::Zmq(&mut z.outbound), Rx::Zmq(&mut z.inbound))),
            (_, Some(u)) => {
                let (r, w) = u.split();
                Ok((
                    Tx::Uds(BufWriter::with_capacity(UDS_BUFFER, w)),
                    Rx::Uds(BufReader::with_capacity(UDS_BUFFER, r), Vec::new()),
                ))
            }
            _ => Err("not connected".into()),
        }
    }
}
