//! A real Chromium, headless, driven over the DevTools protocol (a
//! WebSocket of JSON commands): navigate, evaluate JavaScript in the page,
//! take screenshots. Debian's `chromium`; without it a test fails, saying
//! what to install.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::PATIENCE;

const INSTALL: &str = "the dashboard test needs Chromium: apt-get install chromium";

/// A running browser with one page.
pub struct Browser {
    child: Child,
    socket: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>,
    next: u64,
    /// Where screenshots go.
    pub shots: PathBuf,
}

fn find() -> PathBuf {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|n| {
            std::env::var("PATH")
                .unwrap_or_default()
                .split(':')
                .map(|d| Path::new(d).join(n))
                .collect::<Vec<_>>()
        })
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("no chromium found; {INSTALL}"))
}

/// A GET to Chromium's DevTools HTTP server, which keeps the connection
/// open: the body is read by its Content-Length.
fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").unwrap();
    let mut reader = BufReader::new(s);
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).unwrap();
    String::from_utf8_lossy(&body).into_owned()
}

impl Browser {
    /// Starts Chromium (its profile in `dir`); screenshots go to `shots`.
    pub fn start(dir: &Path, shots: &Path) -> Browser {
        std::fs::create_dir_all(shots).unwrap();
        let profile = dir.join("chromium-profile");
        let mut child = Command::new(find())
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--window-size=1400,1000",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start chromium: {e}; {INSTALL}"));
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    let _ = tx.send(url.to_owned());
                }
            }
        });
        let url = rx
            .recv_timeout(PATIENCE)
            .expect("chromium's DevTools address");
        let port: u16 = url
            .trim_start_matches("ws://127.0.0.1:")
            .split('/')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port in the DevTools address");
        let deadline = Instant::now() + PATIENCE;
        let page = loop {
            let list: Value =
                serde_json::from_str(&http_get(port, "/json/list")).unwrap_or(json!([]));
            let found = list
                .as_array()
                .and_then(|l| l.iter().find(|t| t["type"] == json!("page")))
                .and_then(|t| t["webSocketDebuggerUrl"].as_str().map(str::to_owned));
            if let Some(p) = found {
                break p;
            }
            assert!(Instant::now() < deadline, "chromium has no page");
            std::thread::sleep(Duration::from_millis(50));
        };
        let (socket, _) = tungstenite::connect(page.as_str()).expect("the page's DevTools socket");
        if let tungstenite::stream::MaybeTlsStream::Plain(tcp) = socket.get_ref() {
            tcp.set_read_timeout(Some(PATIENCE)).unwrap();
        }
        Browser {
            child,
            socket,
            next: 0,
            shots: shots.to_owned(),
        }
    }

    /// One DevTools command; its result.
    pub fn command(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        self.socket.send(tungstenite::Message::text(msg)).unwrap();
        loop {
            let m = self.socket.read().unwrap();
            let Ok(text) = m.to_text() else { continue };
            let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
            if v["id"] == json!(id) {
                assert!(v["error"].is_null(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// Opens `url`.
    pub fn open(&mut self, url: &str) {
        self.command("Page.navigate", json!({"url": url}));
    }

    /// Evaluates `js` in the page (awaiting a promise); its value.
    pub fn eval(&mut self, js: &str) -> Value {
        let r = self.command(
            "Runtime.evaluate",
            json!({"expression": js, "returnByValue": true, "awaitPromise": true}),
        );
        r["result"]["value"].clone()
    }

    /// Polls `js` until `pred` holds of its value; panics after the patience.
    pub fn wait_for(&mut self, what: &str, js: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let v = self.eval(js);
            if pred(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; last: {v}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A PNG of the page, kept as `<shots>/<name>.png`.
    pub fn screenshot(&mut self, name: &str) -> PathBuf {
        use base64::Engine as _;
        let r = self.command("Page.captureScreenshot", json!({"format": "png"}));
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap_or(""))
            .unwrap();
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
