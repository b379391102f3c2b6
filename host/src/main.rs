//! `iglu`: run the plugin host, or talk to a running one.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use iglu_host::control::client;
use iglu_host::control::kv::KvCommand;
use iglu_host::control::packages::{SettingsRequest, UninstallRequest};
use iglu_host::control::{CallRequest, PluginRequest, PublishRequest, Request, Response};
use iglu_host::package;
use iglu_host::plugin::status;
use iglu_host::runtime_dir::CONTROL_SOCKET;
use iglu_host::{Config, Host, PluginStatus};

mod cli_install;
mod cli_logs;

/// Iglu: a plugin host that a plugin cannot take down.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Host configuration (TOML). Without it, `run` uses the built-in config
    /// (the example plugins beside this executable) and the other commands
    /// reach the host in $IGLU_RUNTIME_DIR or the default runtime directory.
    #[arg(long, global = true, env = "IGLU_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the host in the foreground until Ctrl-C or SIGTERM.
    Run,
    /// Show every plugin's state.
    Status {
        /// Print JSON (stable field names) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show a plugin's interfaces and methods, with the shapes of their
    /// arguments and results.
    Describe {
        /// The plugin.
        plugin: String,
        /// Print JSON (its interfaces as announced) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Call a plugin's method with JSON arguments; prints the JSON result.
    /// Interface methods are `<interface>.<method>` (see `iglu describe`).
    Call(CallRequest),
    /// Publish an event (JSON payload) on a topic, as the host.
    Publish(PublishRequest),
    /// Load-test the host with real plugin processes, next to a bare zeromq
    /// echo and a bare Unix-socket echo measured in the same run (runs
    /// `iglu-bench`, beside this executable; `iglu bench --help` for its options).
    #[command(disable_help_flag = true)]
    Bench {
        /// Passed to `iglu-bench` as they are.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// A plugin's store on the running host: get, set, delete, list, and
    /// export/import (one plugin's, or with --all the whole store's) for backups.
    Kv {
        #[command(subcommand)]
        op: KvCommand,
    },
    /// Build a plugin bundle from a directory with an `iglu-plugin.toml`:
    /// `<id>-<version>.iglu.tar.gz` with its `.sha256` (and `.sig` with --sign).
    Package {
        /// The package directory.
        dir: PathBuf,
        /// Sign it with this secret key (from `iglu keygen`).
        #[arg(long)]
        sign: Option<PathBuf>,
        /// Where to write the bundle (default: the current directory).
        #[arg(long, short, default_value = ".")]
        out: PathBuf,
    },
    /// Make an ed25519 key pair for signing bundles: `<name>.key` (secret,
    /// mode 0600) and `<name>.pub`.
    Keygen {
        /// Path and name of the two files, without extension.
        name: PathBuf,
    },
    /// Check a bundle: checksum, signature by a trusted key, a safe and
    /// valid content; prints its manifest and the permissions it asks for.
    Verify {
        /// The bundle.
        bundle: PathBuf,
        /// A trusted public key file (repeatable).
        #[arg(long = "key")]
        keys: Vec<PathBuf>,
        /// Accept a bundle without a signature.
        #[arg(long)]
        allow_unsigned: bool,
    },
    /// Install a package on the running host: checks its signature against
    /// the host's trusted keys, shows the permissions it asks for and asks
    /// for approval, then unpacks and starts it.
    Install(cli_install::BundleArgs),
    /// Upgrade an installed package with no failed call: the new version
    /// starts beside the old one and takes over once it has handshaken; if
    /// it does not, the old one goes on. More permissions need approval again.
    Upgrade(cli_install::BundleArgs),
    /// Stop and remove an installed package (its data stays unless --purge).
    Uninstall(UninstallRequest),
    /// Every plugin: where it comes from, version, state and permissions.
    Plugins {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// A plugin's settings: get, set (validated, kept, the plugin told), unset.
    Settings {
        #[command(subcommand)]
        op: SettingsRequest,
    },
    /// Start a stopped or failed plugin.
    Start(PluginRequest),
    /// Stop a plugin (GOODBYE, grace period, SIGTERM, SIGKILL).
    Stop(PluginRequest),
    /// Stop a plugin and start it again.
    Restart(PluginRequest),
    /// A plugin's recent log lines (kept by the host, across restarts).
    Logs(iglu_host::control::LogsRequest),
    /// Change a running plugin's log filter, without a restart.
    LogLevel(iglu_host::control::LogLevelRequest),
    /// Print the dashboard's address, with its token (open it in a browser).
    Dashboard,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("iglu: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = match &cli.config {
        Some(path) => Config::load(path)?,
        None => Config::builtin(),
    };
    // Multi-thread, so a big machine gives the host more than one CPU, but
    // with fewer threads than CPUs: see `Config::worker_threads`.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.worker_threads())
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match cli.command {
        Cmd::Run => {
            init_logging();
            runtime.block_on(serve(config))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Status { json } => {
            let result =
                runtime.block_on(ask(&config, Request::Status, Duration::from_secs(10)))?;
            let plugins: Vec<PluginStatus> =
                serde_json::from_value(result).context("the host's status is not understood")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&plugins)?);
            } else {
                print!("{}", status::table(&plugins));
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Describe { plugin, json } => {
            let result =
                runtime.block_on(ask(&config, Request::Status, Duration::from_secs(10)))?;
            let plugins: Vec<PluginStatus> =
                serde_json::from_value(result).context("the host's status is not understood")?;
            let Some(p) = plugins.iter().find(|p| p.id == plugin) else {
                let ids: Vec<&str> = plugins.iter().map(|p| p.id.as_str()).collect();
                bail!("no plugin named {plugin:?} (there are: {})", ids.join(", "));
            };
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "id": p.id,
                        "methods": p.methods,
                        "interfaces": p.interfaces,
                    }))?
                );
            } else {
                print!("{}", status::describe(p));
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Call(mut call) => {
            let deadline = call.timeout_ms.unwrap_or(config.call_timeout_ms);
            call.timeout_ms = Some(deadline);
            let request = Request::Call(call);
            // Leave the host time to answer "timeout" itself before giving up.
            let wait = Duration::from_millis(deadline) + Duration::from_secs(5);
            let response = runtime.block_on(exchange(&config, request, wait))?;
            print_answer(response, true)
        }
        Cmd::Publish(publish) => {
            let request = Request::Publish(publish);
            let result = runtime.block_on(ask(&config, request, Duration::from_secs(10)))?;
            println!("{}", result.as_str().unwrap_or_default());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Bench { args } => Err(bench(&args)),
        Cmd::Package { dir, sign, out } => {
            let packed = package::commands::package(&dir, &out, sign.as_deref())?;
            println!("{}", packed.bundle.display());
            println!("sha256 {}", packed.sha256);
            if let Some(sig) = packed.signature {
                println!("signature {}", sig.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Keygen { name } => {
            let public = package::signing::keygen(&name)?;
            println!("public key {public}");
            println!(
                "secret key in {} (keep it private)",
                name.with_extension("key").display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Verify {
            bundle,
            keys,
            allow_unsigned,
        } => {
            let v = package::commands::verify(&bundle, &keys, allow_unsigned)?;
            let m = &v.manifest;
            println!("{} {} ({}) by {}", m.id, m.version, m.name, m.author);
            println!("sha256 {}", v.sha256);
            match v.signed_by {
                Some(i) => println!("signed by {}", keys[i].display()),
                None => println!("not signed (allowed)"),
            }
            println!(
                "permissions:\n{}",
                toml::to_string(&m.permissions).unwrap_or_default()
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Kv { op } => {
            // Values are JSON whatever they hold (a string value too).
            let values = matches!(
                op,
                KvCommand::Get { .. } | KvCommand::List { .. } | KvCommand::Export { .. }
            );
            let request = Request::Kv(op.into_request().context("cannot read the import")?);
            let response = runtime.block_on(exchange(&config, request, Duration::from_secs(60)))?;
            print_answer(response, values)
        }
        Cmd::Install(args) => runtime.block_on(cli_install::install(&config, args, false)),
        Cmd::Upgrade(args) => runtime.block_on(cli_install::install(&config, args, true)),
        Cmd::Uninstall(r) => lifecycle(&runtime, &config, Request::Uninstall(r)),
        Cmd::Plugins { json } => {
            let response =
                runtime.block_on(exchange(&config, Request::Plugins, Duration::from_secs(10)))?;
            cli_install::print_plugins(response, json)
        }
        Cmd::Settings { op } => {
            let response = runtime.block_on(exchange(
                &config,
                Request::Settings(op),
                Duration::from_secs(10),
            ))?;
            print_answer(response, true)
        }
        Cmd::Start(p) => lifecycle(&runtime, &config, Request::Start(p)),
        Cmd::Stop(p) => lifecycle(&runtime, &config, Request::Stop(p)),
        Cmd::Restart(p) => lifecycle(&runtime, &config, Request::Restart(p)),
        Cmd::Logs(r) => runtime.block_on(cli_logs::logs(&config, r)),
        Cmd::LogLevel(r) => runtime.block_on(cli_logs::log_level(&config, r)),
        Cmd::Dashboard => {
            let Some(bind) = &config.web.bind else {
                bail!("this host's config has no [web] bind: the dashboard is off");
            };
            let file =
                iglu_host::web::auth::path(&config.runtime_dir(), config.web.token_file.as_deref());
            let token = std::fs::read_to_string(&file).with_context(|| {
                format!(
                    "cannot read the dashboard's token from {} (is the host running?)",
                    file.display()
                )
            })?;
            println!("http://{bind}/?token={}", token.trim());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Prints an answer's result (JSON; a string as it is, unless `json`), or
/// its error on stderr with a failing exit status.
fn print_answer(response: Response, json: bool) -> anyhow::Result<ExitCode> {
    match response {
        Response {
            ok: true, result, ..
        } => {
            match result.unwrap_or_default() {
                serde_json::Value::String(s) if !json => println!("{s}"),
                other => println!("{}", serde_json::to_string_pretty(&other)?),
            }
            Ok(ExitCode::SUCCESS)
        }
        Response { code, message, .. } => {
            eprintln!(
                "error {}: {}",
                code.unwrap_or_default(),
                message.unwrap_or_default()
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Becomes `iglu-bench` (same process, so signals and exit status are its
/// own); returns only if that fails.
fn bench(args: &[std::ffi::OsString]) -> anyhow::Error {
    use std::os::unix::process::CommandExt;
    let exe = match std::env::current_exe() {
        Ok(exe) => exe.with_file_name("iglu-bench"),
        Err(e) => return anyhow::anyhow!("cannot find this executable: {e}"),
    };
    let error = std::process::Command::new(&exe).args(args).exec();
    anyhow::anyhow!(
        "cannot run {}: {error} (build it with `cargo build --workspace --bins`)",
        exe.display()
    )
}

fn lifecycle(
    runtime: &tokio::runtime::Runtime,
    config: &Config,
    request: Request,
) -> anyhow::Result<ExitCode> {
    // Stopping may take two grace periods (GOODBYE, then SIGTERM).
    let wait = Duration::from_millis(config.stop_grace_ms * 2) + Duration::from_secs(10);
    let result = runtime.block_on(ask(config, request, wait))?;
    println!("{}", result.as_str().unwrap_or_default());
    Ok(ExitCode::SUCCESS)
}

async fn exchange(config: &Config, request: Request, wait: Duration) -> anyhow::Result<Response> {
    let socket = config.runtime_dir().join(CONTROL_SOCKET);
    Ok(client::request(&socket, &request, wait).await?)
}

async fn ask(
    config: &Config,
    request: Request,
    wait: Duration,
) -> anyhow::Result<serde_json::Value> {
    let response = exchange(config, request, wait).await?;
    if !response.ok {
        bail!(
            "{}: {}",
            response.code.unwrap_or_default(),
            response.message.unwrap_or_default()
        );
    }
    Ok(response.result.unwrap_or_default())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let host = Host::start(config).await?;
    let signal = wait_for_signal().await;
    tracing::info!(signal, "stopping on signal");
    host.shutdown().await;
    Ok(())
}

async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without handlers the default action (exit) applies; plugins then
        // die by their parent-death signal.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

fn init_logging() {
    use std::io::IsTerminal;
    // zeromq warns when it finds its ipc socket already removed at shutdown;
    // the host removes it on purpose. A peer it drops for what it sent stays
    // visible (the `dropped_peer` target is Iglu's patch, vendor/zeromq/IGLU.md).
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,zeromq=error,zeromq::dropped_peer=warn")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
