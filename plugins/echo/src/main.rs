//! The echo plugin: every behaviour the host must survive, on demand.
//!
//! Each method plays one thing a real plugin might do — answer, take its
//! time, panic, exit, hang, send a lot, burn CPU, keep state on the host —
//! so tests and the bench drive real failure modes through a real process.

mod confinement;
mod recorder;

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use iglu_interfaces::thermostat::ThermostatClient;
use iglu_sdk::{host_api, Context, HandlerError, Manifest, Plugin};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

/// `sleep` calls that ended before their time because the host cancelled
/// them (deadline passed, caller gone): `cancelled` returns the count, so a
/// test can see that a CANCEL reached the plugin and stopped the work.
static CANCELLED: AtomicU64 = AtomicU64::new(0);

/// Counts its call as cancelled if dropped before `finished` is set.
struct CancelWatch {
    finished: bool,
}

impl Drop for CancelWatch {
    fn drop(&mut self) {
        if !self.finished {
            CANCELLED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[derive(Deserialize)]
struct Millis {
    ms: u64,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    message: String,
}

/// `log`: one record at `level`, under the target `echo::probe`, with a
/// field `door`.
#[derive(Deserialize)]
struct LogLine {
    level: String,
    message: String,
    #[serde(default)]
    door: String,
}

#[derive(Deserialize)]
struct Code {
    code: i32,
}

#[derive(Deserialize)]
struct Size {
    bytes: usize,
}

#[derive(Serialize)]
struct Payload {
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
}

#[derive(Deserialize)]
struct Burn {
    ms: u64,
    #[serde(default = "one")]
    threads: usize,
}

fn one() -> usize {
    1
}

#[derive(Deserialize)]
struct Key {
    key: String,
}

#[derive(Deserialize)]
struct KeyValue {
    key: String,
    value: rmpv::Value,
}

#[derive(Deserialize)]
struct Limit {
    #[serde(default = "hundred")]
    limit: usize,
}

fn hundred() -> usize {
    100
}

#[derive(Deserialize)]
struct Filters {
    filters: Vec<String>,
}

#[derive(Deserialize)]
struct Publish {
    topic: String,
    payload: rmpv::Value,
    #[serde(default)]
    retain: bool,
}

#[derive(Deserialize)]
struct PublishMany {
    topic: String,
    count: u64,
}

#[derive(Serialize)]
struct Numbered {
    n: u64,
}

#[derive(Serialize)]
struct Whoami {
    pid: u32,
    plugin_id: String,
}

/// `thermostat_room`: which room, of which plugin (default `thermostat`).
#[derive(Deserialize)]
struct AskThermostat {
    room: String,
    plugin: Option<String>,
}

/// What `thermostat_room` got back.
#[derive(Serialize)]
struct ThermostatAnswer {
    room: Option<iglu_interfaces::thermostat::RoomState>,
    error: Option<String>,
    message: Option<String>,
}

/// `relay`: which plugin and method to call, with what.
#[derive(Deserialize)]
struct Relay {
    plugin: String,
    method: String,
    #[serde(default = "nil")]
    args: rmpv::Value,
    deadline_ms: Option<u64>,
    wait_for_running: Option<bool>,
}

fn nil() -> rmpv::Value {
    rmpv::Value::Nil
}

/// What `relay` got back.
#[derive(Serialize)]
struct RelayAnswer {
    ok: Option<rmpv::Value>,
    code: Option<String>,
    message: Option<String>,
}

fn main() -> ExitCode {
    let recorder = recorder::Recorder::default();
    let mut plugin = Plugin::new(Manifest {
        id: "echo".into(),
        name: "Echo".into(),
        author: "Iglu developers".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        description: "Echoes, sleeps, panics, exits, hangs and stores on demand".into(),
    });
    // Tests choose subscriptions per instance through the environment.
    for filter in std::env::var("ECHO_SUBSCRIBE")
        .unwrap_or_default()
        .split(',')
    {
        if !filter.trim().is_empty() {
            plugin = plugin.subscribe(filter.trim());
        }
    }
    let on_event = recorder.clone();
    let (r1, r2, r3) = (recorder.clone(), recorder.clone(), recorder);
    if let Some(window) = std::env::var("ECHO_EVENT_WINDOW")
        .ok()
        .and_then(|w| w.parse().ok())
    {
        plugin = plugin.event_window(window);
    }
    let changes = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = changes.clone();
    confinement::methods(plugin)
        .receive_own_events(std::env::var("ECHO_RECEIVE_OWN").is_ok_and(|v| v == "1"))
        .on_settings(move |_ctx: Context| {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            async { Ok(()) }
        })
        .method("settings", |ctx: Context, _: IgnoredAny| async move {
            ctx.settings::<rmpv::Value>()
        })
        .method("settings_changes", move |_ctx: Context, _: IgnoredAny| {
            let n = changes.load(std::sync::atomic::Ordering::Relaxed);
            async move { Ok::<_, HandlerError>(n) }
        })
        .on_event(move |_ctx: Context, event| {
            let recorder = on_event.clone();
            async move {
                recorder.record(event).await;
                Ok(())
            }
        })
        .method("events", move |_ctx: Context, args: Limit| {
            let seen = r1.last(args.limit);
            async move { Ok::<_, HandlerError>(seen) }
        })
        .method("event_stats", move |_ctx: Context, _: IgnoredAny| {
            let stats = r2.stats();
            async move { Ok::<_, HandlerError>(stats) }
        })
        .method("set_event_delay", move |_ctx: Context, args: Millis| {
            r3.set_delay(args.ms);
            async move { Ok::<_, HandlerError>(args.ms) }
        })
        .method("subscribe", |ctx: Context, args: Filters| async move {
            let filters: Vec<&str> = args.filters.iter().map(String::as_str).collect();
            ctx.host().subscribe(&filters).await?;
            Ok::<_, HandlerError>(true)
        })
        .method("unsubscribe", |ctx: Context, args: Filters| async move {
            let filters: Vec<&str> = args.filters.iter().map(String::as_str).collect();
            Ok::<_, HandlerError>(ctx.host().unsubscribe(&filters).await?)
        })
        .method("publish", |ctx: Context, args: Publish| async move {
            if args.retain {
                ctx.host()
                    .publish_retained(&args.topic, &args.payload)
                    .await?;
            } else {
                ctx.host().publish(&args.topic, &args.payload).await?;
            }
            Ok::<_, HandlerError>(true)
        })
        .method(
            "publish_many",
            |ctx: Context, args: PublishMany| async move {
                // One at a time, so the host sees them in order.
                for n in 0..args.count {
                    ctx.host().publish(&args.topic, &Numbered { n }).await?;
                }
                Ok::<_, HandlerError>(args.count)
            },
        )
        .method(
            "publish_raw",
            |ctx: Context, args: host_api::host_api_args::EventsPublish| async move {
                // Sends bytes that are not MessagePack as the payload: the host must refuse them.
                ctx.host()
                    .api()
                    .events_publish(args.topic, args.payload, args.retain)
                    .await?;
                Ok::<_, HandlerError>(true)
            },
        )
        .method("relay", |ctx: Context, args: Relay| async move {
            // Calls another plugin through the host; reports its answer or
            // its error's code, so tests can tell the cases apart.
            let answer: Result<rmpv::Value, _> = ctx
                .host()
                .call_plugin(
                    &args.plugin,
                    &args.method,
                    &args.args,
                    Duration::from_millis(args.deadline_ms.unwrap_or(10_000)),
                    args.wait_for_running,
                )
                .await;
            Ok::<_, HandlerError>(match answer {
                Ok(value) => RelayAnswer {
                    ok: Some(value),
                    code: None,
                    message: None,
                },
                Err(e) => RelayAnswer {
                    ok: None,
                    code: Some(e.code().as_str().to_owned()),
                    message: Some(e.to_string()),
                },
            })
        })
        .method(
            "thermostat_room",
            |ctx: Context, args: AskThermostat| async move {
                // A typed plugin-to-plugin call, through the host.
                let plugin = args.plugin.unwrap_or_else(|| "thermostat".to_owned());
                let thermostat = ThermostatClient::new(ctx.host().clone(), plugin);
                Ok::<_, HandlerError>(match thermostat.room(args.room).await {
                    Ok(room) => ThermostatAnswer {
                        room: Some(room),
                        error: None,
                        message: None,
                    },
                    Err(e) => ThermostatAnswer {
                        room: None,
                        error: Some(e.code().as_str().to_owned()),
                        message: Some(e.to_string()),
                    },
                })
            },
        )
        .method("echo", |_ctx: Context, args: rmpv::Value| async move {
            Ok::<_, HandlerError>(args)
        })
        .method("whoami", |ctx: Context, _: IgnoredAny| async move {
            Ok::<_, HandlerError>(Whoami {
                pid: std::process::id(),
                plugin_id: ctx.plugin_id().to_owned(),
            })
        })
        .method("sleep", |_ctx: Context, args: Millis| async move {
            let mut watch = CancelWatch { finished: false };
            tokio::time::sleep(Duration::from_millis(args.ms)).await;
            watch.finished = true;
            Ok::<_, HandlerError>(args.ms)
        })
        .method("cancelled", |_ctx: Context, _: IgnoredAny| async move {
            Ok::<_, HandlerError>(CANCELLED.load(Ordering::Relaxed))
        })
        .method("log", |_ctx: Context, args: LogLine| async move {
            let (m, door) = (args.message, args.door);
            match args.level.as_str() {
                "error" => tracing::error!(target: "echo::probe", %door, "{m}"),
                "warn" => tracing::warn!(target: "echo::probe", %door, "{m}"),
                "info" => tracing::info!(target: "echo::probe", %door, "{m}"),
                "debug" => tracing::debug!(target: "echo::probe", %door, "{m}"),
                _ => tracing::trace!(target: "echo::probe", %door, "{m}"),
            }
            Ok::<_, HandlerError>(true)
        })
        .method("fail", |_ctx: Context, args: Message| async move {
            Err::<(), _>(HandlerError::msg(args.message))
        })
        .method("panic", |_ctx: Context, args: Message| async move {
            panic!("asked to panic: {}", args.message);
            #[allow(unreachable_code)]
            Ok::<(), HandlerError>(())
        })
        .method("exit", |_ctx: Context, args: Code| async move {
            std::process::exit(args.code);
            #[allow(unreachable_code)]
            Ok::<(), HandlerError>(())
        })
        .method("hang", |_ctx: Context, _: IgnoredAny| async move {
            // The whole process freezes, heartbeats included, as a deadlocked or
            // swapped-out plugin would: only the host's liveness check can tell.
            nix::sys::signal::raise(nix::sys::signal::Signal::SIGSTOP)?;
            Ok::<(), HandlerError>(())
        })
        .method("payload", |_ctx: Context, args: Size| async move {
            Ok::<_, HandlerError>(Payload {
                data: vec![0x5a; args.bytes],
            })
        })
        .method("burn", |_ctx: Context, args: Burn| async move {
            // Spin real threads so the handler runtime's cores are all busy.
            let until = Instant::now() + Duration::from_millis(args.ms);
            let threads: Vec<_> = (0..args.threads.clamp(1, 64))
                .map(|_| {
                    std::thread::spawn(move || {
                        let mut x: u64 = 0;
                        while Instant::now() < until {
                            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                        }
                        x
                    })
                })
                .collect();
            for t in threads {
                let _ = t.join();
            }
            Ok::<_, HandlerError>(args.ms)
        })
        .method("kv_get", |ctx: Context, args: Key| async move {
            Ok::<_, HandlerError>(ctx.host().kv_get::<rmpv::Value>(&args.key).await?)
        })
        .method("kv_set", |ctx: Context, args: KeyValue| async move {
            ctx.host().kv_set(&args.key, &args.value).await?;
            Ok::<_, HandlerError>(true)
        })
        .method("kv_delete", |ctx: Context, args: Key| async move {
            Ok::<_, HandlerError>(ctx.host().kv_delete(&args.key).await?)
        })
        .method("host_info", |ctx: Context, _: IgnoredAny| async move {
            Ok::<_, HandlerError>(ctx.host().info().await?)
        })
        .serve()
}
