//! A real Mosquitto broker for a test: Debian's `mosquitto`, started on a
//! free port with a generated config in the test's directory, killed and
//! started again on the same port when a test says so, stopped when
//! dropped. `mosquitto_pub` and `mosquitto_sub` (MQTT 5) are the other
//! clients. Without them installed a test fails, saying what to install.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{free_port, PATIENCE};

const INSTALL: &str = "the MQTT tests need Mosquitto: apt-get install mosquitto mosquitto-clients";

/// Finds a program in `PATH` or the system's sbin directories.
pub fn program(name: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| panic!("{name} not found; {INSTALL}"))
}

/// A running broker.
pub struct Mosquitto {
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: PathBuf,
    extra: String,
    persistent: bool,
    child: Option<Child>,
}

impl Mosquitto {
    /// Starts a broker that keeps its retained messages across restarts
    /// (saved on every change), in `dir`.
    pub fn start(dir: &Path) -> Mosquitto {
        Mosquitto::start_with(dir, "")
    }

    /// The same, with more lines for its config: another listener, with its
    /// own settings (`per_listener_settings` is on; `allow_anonymous` is
    /// false unless the listener says otherwise).
    pub fn start_with(dir: &Path, extra: &str) -> Mosquitto {
        Mosquitto::launch(dir, extra, true)
    }

    /// A broker that keeps nothing across a restart: no retained message,
    /// no session (as Mosquitto runs by default).
    pub fn start_volatile(dir: &Path) -> Mosquitto {
        Mosquitto::launch(dir, "", false)
    }

    fn launch(dir: &Path, extra: &str, persistent: bool) -> Mosquitto {
        let mut m = Mosquitto {
            port: free_port(),
            dir: dir.join("mosquitto"),
            extra: extra.to_owned(),
            persistent,
            child: None,
        };
        std::fs::create_dir_all(&m.dir).unwrap();
        m.spawn();
        m
    }

    /// `mqtt://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let config = self.dir.join("mosquitto.conf");
        let text = format!(
            "per_listener_settings true\nuser root\npersistence {persistent}\npersistence_location {dir}/\nautosave_interval 1\nautosave_on_changes true\nlog_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\nlistener {port} 127.0.0.1\nallow_anonymous true\n{extra}\n",
            port = self.port,
            dir = self.dir.display(),
            extra = self.extra,
            persistent = self.persistent,
        );
        std::fs::write(&config, text).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("mosquitto.log"))
            .unwrap();
        let child = Command::new(program("mosquitto"))
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start mosquitto: {e}; {INSTALL}"));
        self.child = Some(child);
        let deadline = Instant::now() + PATIENCE;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on {}: {}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
    }

    /// Kills it at once (SIGKILL: no goodbye to anyone).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// `mosquitto_pub` one message (MQTT 5), with user properties.
    pub fn publish_with(&self, topic: &str, payload: &str, retain: bool, props: &[(&str, &str)]) {
        let mut c = Command::new(program("mosquitto_pub"));
        c.args(["-h", "127.0.0.1", "-V", "mqttv5", "-q", "1"])
            .args(["-p", &self.port.to_string(), "-t", topic, "-m", payload]);
        if retain {
            c.arg("-r");
        }
        for (k, v) in props {
            c.args(["-D", "publish", "user-property", k, v]);
        }
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "mosquitto_pub failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `mosquitto_pub` one message.
    pub fn publish(&self, topic: &str, payload: &str, retain: bool) {
        self.publish_with(topic, payload, retain, &[]);
    }

    /// A `mosquitto_sub` on `filters`, subscribed once this returns.
    pub fn subscribe(&self, filters: &[&str]) -> Subscriber {
        const PROBE: &str = "iglu-test/probe";
        let mut c = Command::new(program("mosquitto_sub"));
        c.args(["-h", "127.0.0.1", "-V", "mqttv5", "-q", "1"])
            .args(["-p", &self.port.to_string()])
            .args(["-F", "%r|%t|%p"])
            .args(["-t", PROBE]);
        for f in filters {
            c.args(["-t", f]);
        }
        let mut child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start mosquitto_sub: {e}; {INSTALL}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().unwrap();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let sub = Subscriber { child, lines };
        let deadline = Instant::now() + PATIENCE;
        while !sub.lines().iter().any(|l| l.contains(PROBE)) {
            assert!(Instant::now() < deadline, "mosquitto_sub never subscribed");
            self.publish(PROBE, "probe", false);
            std::thread::sleep(Duration::from_millis(50));
        }
        sub.lines.lock().unwrap().retain(|l| !l.contains(PROBE));
        sub
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running `mosquitto_sub`: what it printed, as `retain|topic|payload`.
pub struct Subscriber {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Subscriber {
    /// Every message so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Messages on `topic` so far, as `(retained, payload)`.
    pub fn on(&self, topic: &str) -> Vec<(bool, String)> {
        self.lines()
            .iter()
            .filter_map(|l| {
                let mut parts = l.splitn(3, '|');
                let retained = parts.next()? == "1";
                (parts.next()? == topic).then(|| (retained, parts.next().unwrap_or("").to_owned()))
            })
            .collect()
    }

    /// Forgets what it has seen.
    pub fn clear(&self) {
        self.lines.lock().unwrap().clear();
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
