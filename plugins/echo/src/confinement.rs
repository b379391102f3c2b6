//! Methods that misbehave on demand, for the host's limits and sandbox
//! tests: leak memory, fork, leave its process group, hoard files, read,
//! write, connect. The host
//! must hold the plugin to its limits whatever it does.

use std::time::Duration;

use iglu_sdk::{Context, HandlerError, Plugin};
use serde::{Deserialize, Serialize};

/// `leak`: allocate this many MiB per second, touching every page, and
/// never free them (a plugin with a leak, for the memory limit's tests).
#[derive(Deserialize)]
struct Leak {
    mib_per_s: u64,
}

/// `read_file`, `write_file`, `connect`: what a sandbox must allow or refuse.
#[derive(Deserialize)]
struct Target {
    path: Option<String>,
    addr: Option<String>,
}

/// What it did: `ok` with what it read, or `error` with the system's words.
#[derive(Serialize)]
struct Tried {
    ok: Option<String>,
    error: Option<String>,
}

fn tried<T: std::fmt::Debug>(r: std::io::Result<T>) -> Tried {
    match r {
        Ok(v) => Tried {
            ok: Some(format!("{v:?}").chars().take(200).collect()),
            error: None,
        },
        Err(e) => Tried {
            ok: None,
            error: Some(e.to_string()),
        },
    }
}

/// `open_files`: open up to this many files and keep them open.
#[derive(Deserialize)]
struct OpenFiles {
    n: usize,
}

#[derive(Serialize)]
struct Opened {
    opened: usize,
    error: Option<String>,
}

/// `plugin` with the misbehaving methods.
pub fn methods(plugin: Plugin) -> Plugin {
    plugin
        .method("leak", |_ctx: Context, args: Leak| async move {
            let rate = args.mib_per_s.clamp(1, 4096);
            std::thread::spawn(move || {
                let mut kept: Vec<Vec<u8>> = Vec::new();
                loop {
                    // 1 MiB, every page written so it is resident.
                    kept.push(vec![0x5a; 1 << 20]);
                    std::thread::sleep(Duration::from_micros(1_000_000 / rate));
                }
            });
            Ok::<_, HandlerError>(rate)
        })
        .method("fork", |_ctx: Context, args: OpenFiles| async move {
            // Starts up to `n` processes that stay (a fork bomb, bounded so
            // that a host that fails to contain it does not take the machine).
            let mut spawned = 0;
            let mut error = None;
            for _ in 0..args.n.min(4096) {
                match std::process::Command::new("sleep").arg("120").spawn() {
                    Ok(child) => {
                        spawned += 1;
                        std::mem::forget(child);
                    }
                    Err(e) => {
                        error = Some(e.to_string());
                        break;
                    }
                }
            }
            Ok::<_, HandlerError>(Opened {
                opened: spawned,
                error,
            })
        })
        .method("escape", |_ctx: Context, _: ()| async move {
            // A process that leaves the plugin's process group, as a daemon
            // would: a signal to the group no longer reaches it.
            use std::os::unix::process::CommandExt;
            let child = std::process::Command::new("sleep")
                .arg("120")
                .process_group(0)
                .spawn()
                .map_err(|e| HandlerError::msg(format!("cannot start it: {e}")))?;
            let pid = child.id();
            std::mem::forget(child);
            Ok::<_, HandlerError>(pid)
        })
        .method("read_file", |_ctx: Context, args: Target| async move {
            let path = args.path.unwrap_or_default();
            Ok::<_, HandlerError>(tried(std::fs::read_to_string(path)))
        })
        .method("write_file", |_ctx: Context, args: Target| async move {
            let path = args.path.unwrap_or_default();
            Ok::<_, HandlerError>(tried(std::fs::write(path, b"written")))
        })
        .method("connect", |_ctx: Context, args: Target| async move {
            let addr = args.addr.unwrap_or_default();
            Ok::<_, HandlerError>(tried(
                std::net::TcpStream::connect_timeout(
                    &addr
                        .parse()
                        .map_err(|e| HandlerError::msg(format!("{e}")))?,
                    Duration::from_secs(5),
                )
                .map(|_| "connected"),
            ))
        })
        .method("open_files", |_ctx: Context, args: OpenFiles| async move {
            let mut files = Vec::new();
            let mut error = None;
            for _ in 0..args.n.min(1 << 20) {
                match std::fs::File::open("/dev/null") {
                    Ok(f) => files.push(f),
                    Err(e) => {
                        error = Some(e.to_string());
                        break;
                    }
                }
            }
            let opened = files.len();
            // Kept open on purpose, as a leaking plugin would.
            std::mem::forget(files);
            Ok::<_, HandlerError>(Opened { opened, error })
        })
}
