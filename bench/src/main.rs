//! `iglu-bench` (also reached as `iglu bench`): load-tests the Iglu host
//! with real plugin processes, next to its floors, in one run.

use std::process::ExitCode;

use anyhow::bail;
use clap::{Parser, Subcommand};
use iglu_bench::floors::{serve, Floor};
use iglu_bench::Options;

#[derive(Parser)]
#[command(
    name = "iglu bench",
    about = "Load-test the host with real plugin processes, next to a bare zeromq echo and a bare Unix-socket echo measured in the same run",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    internal: Option<Internal>,
    #[command(flatten)]
    options: Options,
}

#[derive(Subcommand)]
enum Internal {
    /// (internal) The echo peer of a bench floor.
    #[command(hide = true)]
    Peer {
        /// zmq or uds.
        kind: String,
        /// Where to listen.
        address: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("iglu bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.internal {
        Some(Internal::Peer { kind, address }) => {
            let floor = match kind.as_str() {
                "zmq" => Floor::Zmq,
                "uds" => Floor::Uds,
                other => bail!("unknown floor {other:?}"),
            };
            // Never outlive the bench, however it ends (a killed bench cannot
            // reap it). Best effort: the bench also kills it when done.
            let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
            // The peer is a plugin stand-in: one thread, like a plugin's I/O loop.
            let peer = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            peer.block_on(serve(floor, &address))
                .map_err(anyhow::Error::msg)
        }
        None => {
            let filter = tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .try_init();
            // The embedded host gets the runtime `iglu run` would give it:
            // with tokio's default (a thread per CPU) instead, 64 calls in
            // flight measured 0.57x on 2 vCPUs (see Config::worker_threads).
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(iglu_host::Config::builtin().worker_threads())
                .enable_all()
                .build()?;
            runtime
                .block_on(iglu_bench::run(cli.options))
                .map_err(anyhow::Error::msg)
        }
    }
}
