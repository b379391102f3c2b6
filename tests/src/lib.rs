//! One way to start a real host for a test: [`TestHost::start`].
//!
//! It writes a config into a fresh directory, runs the real `iglu` binary
//! with it, and talks to it through the real control socket (and, where a
//! test is about the CLI, through the real `iglu` CLI). Nothing is mocked.
//! Binaries come from the workspace's target directory: build them first
//! with `cargo build --workspace --bins` (the README's test command does).
//! Waiting is always polling for a state with a generous deadline.
#![allow(clippy::unwrap_used)]

pub mod browser;
pub mod events;
pub mod mosquitto;
mod process;
pub mod raw;

pub use process::*;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

/// Generous default for "eventually": shared CI machines are slow and noisy.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The directory holding the workspace's binaries (`target/<profile>`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test-binary>
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

/// Path of a workspace binary; panics with the fix if it was not built.
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` before the tests",
        path.display()
    );
    path
}

/// A fresh directory under the system temp dir, removed by [`TestHost`]'s drop.
/// Kept short: ipc socket paths must fit in 108 bytes.
pub fn fresh_dir(tag: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "iglu-t-{}-{}-{tag}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A TOML `[[plugin]]` block for a workspace plugin binary.
pub fn plugin(id: &str, binary: &str, args: &[&str]) -> String {
    plugin_with_env(id, binary, args, &[])
}

/// A `[[plugin]]` block with extra environment variables.
pub fn plugin_with_env(id: &str, binary: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    let env: Vec<String> = env.iter().map(|(k, v)| format!("{k} = {v:?}")).collect();
    format!(
        "[[plugin]]\nid = {id:?}\ncommand = {:?}\nargs = [{}]\nenv = {{ {} }}\n",
        bin(binary).display().to_string(),
        args.join(", "),
        env.join(", ")
    )
}

/// A `[[plugin]]` block (from [`plugin`] or [`plugin_with_env`]) whose
/// sandbox also lets it write beneath `dir` (a test's report file).
pub fn writing_to(block: String, dir: &Path) -> String {
    format!(
        "{block}sandbox = {{ write = [{:?}] }}\n",
        dir.display().to_string()
    )
}

/// A `[sandbox]` table letting every plugin read the workspace's binaries
/// (for wrapper scripts that run them from a package or `plugin_dir`).
pub fn sandbox_reading_binaries() -> String {
    format!(
        "[sandbox]\nread = [{:?}]\n",
        bin_dir().display().to_string()
    )
}

/// A running `iglu run` and its private directory.
pub struct TestHost {
    /// The test's directory (config, runtime dir, log).
    pub dir: PathBuf,
    /// The config file.
    pub config: PathBuf,
    /// The host's runtime directory (control socket, plugins' endpoint).
    pub rt: PathBuf,
    child: Option<Child>,
}

/// An error answer from the host: code and message.
#[derive(Debug, Clone, PartialEq)]
pub struct CallFailure {
    /// Machine-readable code.
    pub code: String,
    /// The sentence.
    pub message: String,
}

impl TestHost {
    /// Starts a host whose config is `settings` (top-level keys) followed by `plugins`
    /// (`[[plugin]]` blocks), and waits until its control socket answers.
    pub fn start(settings: &str, plugins: &[String]) -> TestHost {
        TestHost::start_in(&fresh_dir("host"), settings, plugins)
    }

    /// The same, with variables of the host's environment (`RUST_LOG`, say).
    pub fn start_with_env(settings: &str, plugins: &[String], env: &[(&str, &str)]) -> TestHost {
        TestHost::start_full(&fresh_dir("host"), settings, plugins, env)
    }

    /// The same in a directory of the caller's (its `data/` is the store's).
    pub fn start_in(dir: &Path, settings: &str, plugins: &[String]) -> TestHost {
        TestHost::start_full(dir, settings, plugins, &[])
    }

    fn start_full(
        dir: &Path,
        settings: &str,
        plugins: &[String],
        env: &[(&str, &str)],
    ) -> TestHost {
        let dir = dir.to_owned();
        let config = dir.join("iglu.toml");
        let text = format!(
            "runtime_dir = {:?}\ndata_dir = \"data\"\n{settings}\n{}",
            dir.join("rt").display().to_string(),
            plugins.join("\n")
        );
        std::fs::write(&config, text).unwrap();
        let mut command = Command::new(bin("iglu"));
        command.arg("--config").arg(&config).arg("run");
        command.envs(env.iter().copied());
        let rt = dir.join("rt");
        TestHost::launch(dir, config, rt, command)
    }

    /// Starts `iglu run` with no config file: the built-in default config
    /// (the example plugins beside the executable), with its runtime
    /// directory under the test's own (`XDG_RUNTIME_DIR`).
    pub fn start_builtin() -> TestHost {
        let dir = fresh_dir("builtin");
        let mut command = Command::new(bin("iglu"));
        command
            .arg("run")
            .env("XDG_RUNTIME_DIR", &dir)
            .env("XDG_DATA_HOME", dir.join("data"));
        let rt = dir.join("iglu");
        TestHost::launch(dir.clone(), dir.join("no-config"), rt, command)
    }

    fn launch(dir: PathBuf, config: PathBuf, rt: PathBuf, command: Command) -> TestHost {
        let log = std::fs::File::create(dir.join("host.log")).unwrap();
        let child = spawn_logged(command, log);
        let host = TestHost {
            dir,
            config,
            rt,
            child: Some(child),
        };
        host.eventually("the control socket to answer", || {
            host.try_request(&json!({"cmd": "status"})).ok()
        });
        host
    }

    /// The host's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// The control socket.
    pub fn control_socket(&self) -> PathBuf {
        self.rt.join("control.sock")
    }

    /// The host's control cookie (in its runtime directory), if it is there yet.
    pub fn cookie(&self) -> Option<String> {
        std::fs::read_to_string(self.rt.join("control.cookie"))
            .ok()
            .map(|c| c.trim().to_owned())
    }

    /// The plugins' ZeroMQ endpoint.
    pub fn endpoint(&self) -> String {
        format!("ipc://{}", self.rt.join("plugins.sock").display())
    }

    /// Everything the host has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("host.log")).unwrap_or_default()
    }

    fn try_request(&self, request: &Value) -> std::io::Result<Value> {
        self.request_within(request, Duration::from_secs(120))
    }

    /// One control request that must be answered within `within`: an error
    /// (not a panic) if the host does not answer in time.
    pub fn request_within(&self, request: &Value, within: Duration) -> std::io::Result<Value> {
        let mut stream = UnixStream::connect(self.control_socket())?;
        stream.set_read_timeout(Some(within))?;
        stream.set_write_timeout(Some(within))?;
        // Every request carries the host's cookie, as the CLI's do.
        let mut request = request.clone();
        if let (Some(map), Some(cookie)) = (request.as_object_mut(), self.cookie()) {
            map.insert("cookie".into(), json!(cookie));
        }
        stream.write_all(format!("{request}\n").as_bytes())?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line)?;
        serde_json::from_str(&line).map_err(std::io::Error::other)
    }

    /// One control request; panics if the host does not answer.
    pub fn request(&self, request: &Value) -> Value {
        self.try_request(request).unwrap_or_else(|e| {
            panic!(
                "control request {request} failed: {e}\n--- host log ---\n{}",
                self.log()
            )
        })
    }

    /// Calls a plugin through the control socket.
    pub fn call(&self, plugin: &str, method: &str, args: Value) -> Result<Value, CallFailure> {
        self.call_with_timeout(plugin, method, args, 20_000)
    }

    /// Calls a plugin with a deadline in ms.
    pub fn call_with_timeout(
        &self,
        plugin: &str,
        method: &str,
        args: Value,
        timeout_ms: u64,
    ) -> Result<Value, CallFailure> {
        // Never wait for the harness's own patience on a call the host must
        // end: a broken crash detection fails here within seconds, not minutes.
        let read = Duration::from_millis(timeout_ms.min(20_000)) + Duration::from_secs(15);
        let request = json!({"cmd": "call", "plugin": plugin, "method": method, "args": args, "timeout_ms": timeout_ms});
        let r = self.request_within(&request, read).unwrap_or_else(|e| {
            panic!(
                "call {plugin}.{method} got no answer within {read:?}: {e}\n--- host log ---\n{}",
                self.log()
            )
        });
        if r["ok"] == json!(true) {
            Ok(r["result"].clone())
        } else {
            Err(CallFailure {
                code: r["code"].as_str().unwrap_or_default().to_owned(),
                message: r["message"].as_str().unwrap_or_default().to_owned(),
            })
        }
    }

    /// Every plugin's status.
    pub fn status(&self) -> Vec<Value> {
        let r = self.request(&json!({"cmd": "status"}));
        r["result"].as_array().cloned().unwrap_or_default()
    }

    /// One plugin's status.
    pub fn plugin(&self, id: &str) -> Value {
        self.status()
            .into_iter()
            .find(|p| p["id"] == json!(id))
            .unwrap_or_else(|| panic!("no plugin {id} in status"))
    }

    /// Polls until `check` returns `Some`, or panics after [`PATIENCE`] with the host log.
    pub fn eventually<T>(&self, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(v) = check() {
                return v;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}\n--- host log ---\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Waits until `id` satisfies `pred`; returns its status.
    pub fn wait_plugin(&self, id: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.eventually(&format!("plugin {id}: {what}"), || {
            let p = self.plugin(id);
            pred(&p).then_some(p)
        })
    }

    /// Waits until `id` is in `state`; returns its status.
    pub fn wait_state(&self, id: &str, state: &str) -> Value {
        self.wait_plugin(id, &format!("state {state}"), |p| {
            p["state"] == json!(state)
        })
    }

    /// Waits until `id` is running with a process id other than `old`.
    pub fn wait_new_pid(&self, id: &str, old: u64) -> Value {
        self.wait_plugin(id, "running with a new pid", |p| {
            p["state"] == json!("running") && p["pid"].as_u64().is_some_and(|pid| pid != old)
        })
    }

    /// Runs the real `iglu` CLI against this host.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(bin("iglu"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap()
    }

    /// Sends a signal to the host.
    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid() as i32), signal).unwrap();
    }

    /// Waits for the host process to exit; returns its status.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl TestHost {
    /// Starts the host again on the same config (after it exited or was
    /// killed: waits for that first), appending to the same log.
    pub fn relaunch(&mut self) {
        if let Some(mut old) = self.child.take() {
            let _ = old.wait();
        }
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join("host.log"))
            .unwrap();
        let mut command = Command::new(bin("iglu"));
        command.arg("--config").arg(&self.config).arg("run");
        self.child = Some(spawn_logged(command, log));
        self.eventually("the control socket to answer again", || {
            self.try_request(&json!({"cmd": "status"})).ok()
        });
    }

    /// A `kv` control request; its result, or the error's code and message.
    pub fn kv(&self, request: Value) -> Result<Value, CallFailure> {
        let mut request = request;
        request["cmd"] = json!("kv");
        let r = self.request(&request);
        if r["ok"] == json!(true) {
            Ok(r["result"].clone())
        } else {
            Err(CallFailure {
                code: r["code"].as_str().unwrap_or_default().to_owned(),
                message: r["message"].as_str().unwrap_or_default().to_owned(),
            })
        }
    }
}

/// Starts the host's process with its output in `log`.
fn spawn_logged(mut command: Command, log: std::fs::File) -> Child {
    if !command.get_envs().any(|(k, _)| k == "RUST_LOG") {
        command.env("RUST_LOG", "info,iglu_host=debug");
    }
    command
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

impl Drop for TestHost {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Sets the flag when dropped: threads of a scope that loop until it is
/// set must stop even when the test body panics, or the scope never ends.
pub struct StopOnDrop<'a>(pub &'a std::sync::atomic::AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The host still serves: status and an echo call each answer within 10 s.
pub fn still_serving(host: &TestHost, what: &str) {
    let status = host.request_within(&json!({"cmd": "status"}), Duration::from_secs(10));
    assert!(
        status.as_ref().is_ok_and(|s| s["ok"] == json!(true)),
        "{what}: status did not answer: {status:?}\n--- host log ---\n{}",
        host.log()
    );
    let call = host.request_within(
        &json!({"cmd": "call", "plugin": "echo", "method": "echo", "args": "still here", "timeout_ms": 5000}),
        Duration::from_secs(10),
    );
    assert!(
        call.as_ref()
            .is_ok_and(|r| r["result"] == json!("still here")),
        "{what}: echo did not answer: {call:?}\n--- host log ---\n{}",
        host.log()
    );
}
