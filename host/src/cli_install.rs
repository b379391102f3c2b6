//! `iglu install`, `iglu upgrade`, `iglu uninstall`, `iglu plugins` and
//! `iglu settings`, the CLI's side: the host checks the bundle and says
//! what it asks for; the user approves (or `--yes` does); then the host
//! installs exactly what was approved.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use iglu_host::control::packages::{InstallRequest, PlanRequest};
use iglu_host::control::{Request, Response};
use iglu_host::install::plan::{listed, Plan};
use iglu_host::Config;

/// The bundle options of `install` and `upgrade`.
#[derive(Debug, Clone, clap::Args)]
pub struct BundleArgs {
    /// The bundle (`<id>-<version>.iglu.tar.gz`, with its `.sig` beside it).
    pub bundle: PathBuf,
    /// Approve the permissions it asks for without asking (for scripts).
    #[arg(long, short)]
    pub yes: bool,
    /// Accept a bundle with no signature.
    #[arg(long)]
    pub allow_unsigned: bool,
}

/// How long an install or upgrade may take: the new version's handshake,
/// the old one's drain and stop, and time to spare.
fn patience(config: &Config) -> Duration {
    Duration::from_millis(config.handshake_timeout_ms + 2 * config.stop_grace_ms)
        + Duration::from_secs(30)
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::fs::canonicalize(path).with_context(|| format!("cannot find {}", path.display()))
}

fn show(plan: &Plan) {
    println!(
        "{} {} ({}) by {}",
        plan.id, plan.version, plan.name, plan.author
    );
    if !plan.description.is_empty() {
        println!("  {}", plan.description);
    }
    match &plan.signed_by {
        Some(key) => println!("  signed by {key}"),
        None => println!("  NOT SIGNED"),
    }
    if let Some(v) = &plan.installed {
        println!("  installed now: {v}");
    }
    let all = listed(&plan.permissions);
    println!("  permissions:");
    if all.is_empty() {
        println!("    none");
    }
    for p in &all {
        let new = plan.installed.is_some() && plan.more.contains(p);
        println!("    {p}{}", if new { "   (new)" } else { "" });
    }
}

/// Asks the user; false on anything but yes. Refuses to guess with no terminal.
fn approve(question: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("approval needed and no terminal to ask on: pass --yes to approve");
    }
    print!("{question} [y/N] ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

/// `iglu install` (or, with `upgrade`, `iglu upgrade`).
pub async fn install(config: &Config, args: BundleArgs, upgrade: bool) -> anyhow::Result<ExitCode> {
    let bundle = absolute(&args.bundle)?;
    let plan_request = Request::Plan(PlanRequest {
        bundle: bundle.clone(),
        allow_unsigned: args.allow_unsigned,
    });
    let plan: Plan =
        serde_json::from_value(crate::ask(config, plan_request, Duration::from_secs(120)).await?)
            .context("the host's plan is not understood")?;
    show(&plan);
    let needs_approval = !upgrade || !plan.more.is_empty();
    let approved = if needs_approval {
        let what = if upgrade { "Upgrade" } else { "Install" };
        let question = format!(
            "{what} {} {} with these permissions?",
            plan.id, plan.version
        );
        if !args.yes && !approve(&question)? {
            println!("not approved: nothing changed");
            return Ok(ExitCode::FAILURE);
        }
        Some(plan.permissions.clone())
    } else {
        None
    };
    let request = InstallRequest {
        bundle,
        allow_unsigned: args.allow_unsigned,
        approved,
        sha256: Some(plan.sha256.clone()),
    };
    let request = if upgrade {
        Request::Upgrade(request)
    } else {
        Request::Install(request)
    };
    let response = crate::exchange(config, request, patience(config)).await?;
    crate::print_answer(response, true)
}

/// `iglu plugins`: a table, or JSON.
pub fn print_plugins(response: Response, json: bool) -> anyhow::Result<ExitCode> {
    if json || !response.ok {
        return crate::print_answer(response, true);
    }
    let list = response.result.unwrap_or_default();
    println!(
        "{:<16} {:<10} {:<10} {:<10} PERMISSIONS",
        "ID", "SOURCE", "VERSION", "STATE"
    );
    for p in list.as_array().into_iter().flatten() {
        let text = |k: &str| p[k].as_str().unwrap_or("-").to_owned();
        let permissions = match &p["permissions"] {
            serde_json::Value::String(s) => s.clone(),
            g => {
                let count = |k: &str| g[k].as_array().map_or(0, Vec::len);
                format!(
                    "publish {} subscribe {} host_api {} calls {}",
                    count("publish"),
                    count("subscribe"),
                    count("host_api"),
                    p["calls"].as_array().map_or(0, Vec::len)
                )
            }
        };
        println!(
            "{:<16} {:<10} {:<10} {:<10} {permissions}",
            text("id"),
            text("source"),
            text("version"),
            text("state")
        );
    }
    Ok(ExitCode::SUCCESS)
}
