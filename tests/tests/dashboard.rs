//! The dashboard in a real browser (headless Chromium over the DevTools
//! protocol) against a real host with real plugins: every plugin Running,
//! a click on restart raises the counter on the page, `iglu publish` shows
//! in the event stream, a killed plugin shows Crashed and then Running,
//! and a plugin's logs. Screenshots are kept under
//! `target/dashboard-screenshots/`.

#![allow(clippy::unwrap_used)]

use iglu_tests::browser::Browser;
use iglu_tests::{bin_dir, free_port, plugin, TestHost};
use serde_json::{json, Value};

const ROWS: &str = "JSON.stringify([...document.querySelectorAll('#plugins tbody tr')].map(r => ({id: r.dataset.plugin, state: r.querySelector('.state').dataset.state, text: r.querySelector('.state').textContent, restarts: Number(r.querySelector('.restarts').textContent)})))";

fn rows(v: &Value) -> Vec<Value> {
    v.as_str()
        .and_then(|s| serde_json::from_str::<Vec<Value>>(s).ok())
        .unwrap_or_default()
}

/// The status line of one raw HTTP request to the dashboard.
fn status_line(port: u16, request: &str) -> String {
    use std::io::{BufRead, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut line = String::new();
    std::io::BufReader::new(s).read_line(&mut line).unwrap();
    line
}

fn row(v: &Value, id: &str) -> Option<Value> {
    rows(v).into_iter().find(|r| r["id"] == json!(id))
}

#[test]
fn the_dashboard_shows_and_drives_the_host_in_a_real_browser() {
    let port = free_port();
    let host = TestHost::start(
        &format!("[web]\nbind = \"127.0.0.1:{port}\"\n[restart]\nbackoff_initial_ms = 1500\nbackoff_max_ms = 1500\n"),
        &[
            plugin("echo", "iglu-plugin-echo", &[]),
            plugin("history", "iglu-plugin-history", &[]),
            plugin("thermostat", "iglu-plugin-thermostat", &[]),
        ],
    );
    for id in ["echo", "history", "thermostat"] {
        host.wait_state(id, "running");
    }
    let out = host.cli(&["dashboard"]);
    assert!(out.status.success(), "{out:?}");
    let url = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(
        url.starts_with(&format!("http://127.0.0.1:{port}/?token=")),
        "{url}"
    );

    // Without the token: refused; a button's POST without the dashboard's
    // header (another site's form): refused even with the token.
    let token = url.rsplit("token=").next().unwrap().to_owned();
    assert!(status_line(port, "GET /api/status HTTP/1.0\r\n\r\n").contains("401"));
    assert!(status_line(port, "GET /?token=wrong HTTP/1.0\r\n\r\n").contains("401"));
    let forged = format!(
        "POST /api/plugins/echo/stop HTTP/1.0\r\nCookie: iglu_token={token}\r\nContent-Length: 0\r\n\r\n"
    );
    assert!(status_line(port, &forged).contains("403"));
    assert_eq!(host.plugin("echo")["state"], json!("running"));

    let shots = bin_dir().parent().unwrap().join("dashboard-screenshots");
    let mut browser = Browser::start(&host.dir, &shots);
    browser.open(&url);
    browser.wait_for("every plugin Running on the page", ROWS, |v| {
        let r = rows(v);
        r.len() == 3 && r.iter().all(|p| p["state"] == json!("running"))
    });
    browser.screenshot("1-running");

    // Restart from the page: its counter goes up, and it is Running again.
    let before = row(&browser.eval(ROWS), "echo").unwrap()["restarts"]
        .as_u64()
        .unwrap();
    browser.eval("document.querySelector('button[data-action=restart][data-plugin=echo]').click()");
    browser.wait_for("echo's restart counted on the page", ROWS, |v| {
        row(v, "echo").is_some_and(|r| {
            r["restarts"].as_u64().unwrap_or(0) > before && r["state"] == json!("running")
        })
    });
    browser.screenshot("2-restarted");

    // An event from the CLI appears in the live stream.
    assert!(host
        .cli(&["publish", "home/dashboard/test", r#"{"n":42}"#])
        .status
        .success());
    browser.wait_for(
        "the event in the stream",
        "document.querySelector('#events li[data-topic=\"home/dashboard/test\"]')?.textContent ?? ''",
        |v| v.as_str().is_some_and(|t| t.contains("42")),
    );
    browser.screenshot("3-event");

    // A plugin killed: Crashed on the page, then Running again.
    let pid = host.plugin("history")["pid"].as_u64().unwrap();
    iglu_tests::signal_pid(pid, nix::sys::signal::Signal::SIGKILL);
    browser.wait_for("history Crashed on the page", ROWS, |v| {
        row(v, "history").is_some_and(|r| r["text"].as_str().is_some_and(|t| t.contains("crashed")))
    });
    browser.screenshot("4-crashed");
    browser.wait_for("history Running again on the page", ROWS, |v| {
        row(v, "history").is_some_and(|r| r["state"] == json!("running"))
    });

    // A plugin's recent logs, on a click on its row.
    browser.eval("document.querySelector('#plugins tbody tr[data-plugin=echo] td.id').click()");
    browser.wait_for(
        "echo's logs",
        "document.querySelector('#logs').textContent",
        |v| {
            v.as_str()
                .is_some_and(|t| t.contains("connected to the host"))
        },
    );
    let shot = browser.screenshot("5-logs");
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "a real screenshot"
    );
}
