//! The memory workload: a real `iglu run` with 16 idle plugins, read from
//! `/proc`, and this process's growth over a long run of calls.

use std::time::{Duration, Instant};

use iglu_host::{CallOptions, PluginState};
use serde::Serialize;

use super::measure::rss_kib;
use super::workloads::payload_args;
use super::Bench;

/// Memory figures, in KiB.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryRow {
    /// RSS of an `iglu run` serving 16 idle plugins.
    pub host_idle_16_plugins_kib: u64,
    /// Peak RSS of that host.
    pub host_peak_kib: u64,
    /// Largest RSS of those plugin processes.
    pub plugin_max_kib: u64,
    /// Median RSS of those plugin processes.
    pub plugin_median_kib: u64,
    /// Calls made for the growth figure.
    pub long_run_calls: u64,
    /// RSS of the bench process before and after them.
    pub long_run_rss_before_kib: u64,
    /// After.
    pub long_run_rss_after_kib: u64,
    /// Growth in percent.
    pub long_run_growth_percent: f64,
}

/// Runs a real `iglu run` with 16 idle bench plugins and reads its memory,
/// then measures the bench host's growth over `calls` calls.
pub async fn memory(b: &Bench, calls: u64) -> Result<MemoryRow, String> {
    let dir = b.dir.join("mem");
    let _ = std::fs::create_dir_all(&dir);
    let plugin = super::plugin_binary()?;
    let mut toml = format!(
        "runtime_dir = {:?}\ndata_dir = {:?}\n",
        dir.join("rt").display().to_string(),
        dir.join("data").display().to_string()
    );
    for i in 0..16 {
        toml.push_str(&format!(
            "[[plugin]]\nid = \"idle-{i}\"\ncommand = {:?}\n",
            plugin.display().to_string()
        ));
    }
    let config = dir.join("iglu.toml");
    std::fs::write(&config, toml).map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = tokio::process::Command::new(exe)
        .arg("--config")
        .arg(&config)
        .arg("run")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| e.to_string())?;
    let host_pid = child.id().ok_or("no pid")?;
    let socket = dir.join("rt").join(iglu_host::runtime_dir::CONTROL_SOCKET);
    let deadline = Instant::now() + Duration::from_secs(30);
    let pids: Vec<u32> = loop {
        let r = iglu_host::control::client::request(
            &socket,
            &iglu_host::control::Request::Status,
            Duration::from_secs(5),
        )
        .await;
        if let Ok(resp) = r {
            let st: Vec<iglu_host::PluginStatus> =
                serde_json::from_value(resp.result.unwrap_or_default()).unwrap_or_default();
            if st.len() == 16 && st.iter().all(|p| p.state == PluginState::Running) {
                break st.iter().filter_map(|p| p.pid).collect();
            }
        }
        if Instant::now() > deadline {
            return Err("the 16-plugin host did not come up".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Let it settle into idle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (host_rss, host_peak) = rss_kib(host_pid).ok_or("cannot read host memory")?;
    let mut plugin_rss: Vec<u64> = pids
        .iter()
        .filter_map(|p| rss_kib(*p).map(|r| r.0))
        .collect();
    plugin_rss.sort();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(host_pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = tokio::time::timeout(Duration::from_secs(15), child.wait()).await;

    // Growth of the in-process host over a long run of calls.
    let me = std::process::id();
    let client = b.host.client();
    let args = payload_args(64);
    let warm = |n: u64| {
        let client = client.clone();
        let args = args.clone();
        async move {
            let per_task = n / 64;
            let mut tasks = Vec::new();
            for _ in 0..64 {
                let client = client.clone();
                let args = args.clone();
                tasks.push(tokio::spawn(async move {
                    for _ in 0..per_task {
                        client
                            .call_with(
                                "bench-0",
                                "echo",
                                args.clone(),
                                CallOptions::new(Duration::from_secs(30)),
                            )
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                    Ok::<_, String>(())
                }));
            }
            for t in tasks {
                t.await.map_err(|e| e.to_string())??;
            }
            Ok::<_, String>(())
        }
    };
    warm(calls / 10).await?;
    let before = rss_kib(me).map(|r| r.0).unwrap_or(0);
    warm(calls).await?;
    let after = rss_kib(me).map(|r| r.0).unwrap_or(0);
    Ok(MemoryRow {
        host_idle_16_plugins_kib: host_rss,
        host_peak_kib: host_peak,
        plugin_max_kib: plugin_rss.last().copied().unwrap_or(0),
        plugin_median_kib: plugin_rss.get(plugin_rss.len() / 2).copied().unwrap_or(0),
        long_run_calls: calls,
        long_run_rss_before_kib: before,
        long_run_rss_after_kib: after,
        long_run_growth_percent: (after as f64 - before as f64) / (before.max(1) as f64) * 100.0,
    })
}
