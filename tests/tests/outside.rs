//! The SDK used the way a plugin author outside this repository uses it: a
//! new crate in a temporary directory that depends on `iglu-sdk` by path,
//! and nothing else of ours. It must build with no extra lines (the patched
//! zeromq is a plain dependency, not a `[patch]` that would stay behind),
//! and run as a plugin under a real host.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use iglu_tests::{fresh_dir, TestHost};
use serde_json::json;

const MAIN: &str = r#"
use iglu_sdk::{Context, HandlerError, Manifest, Plugin};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Greet { name: String }
#[derive(Serialize)]
struct Greeting { text: String }

fn main() -> std::process::ExitCode {
    Plugin::new(Manifest {
        id: "greeter".into(),
        name: "Greeter".into(),
        author: "you".into(),
        version: "0.1.0".into(),
        description: "Says hello".into(),
    })
    .method("greet", |ctx: Context, args: Greet| async move {
        let visits: u64 = ctx.host().kv_get("visits").await?.unwrap_or(0);
        ctx.host().kv_set("visits", &(visits + 1)).await?;
        Ok::<_, HandlerError>(Greeting { text: format!("hello, {} (visit {})", args.name, visits + 1) })
    })
    .serve()
}
"#;

#[test]
fn a_crate_outside_the_workspace_builds_on_the_sdk_and_runs_as_a_plugin() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let dir = fresh_dir("outside");
    let krate = dir.join("greeter");
    std::fs::create_dir_all(krate.join("src")).unwrap();
    std::fs::write(
        krate.join("Cargo.toml"),
        format!(
            "[package]\nname = \"greeter\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
             [dependencies]\niglu-sdk = {{ path = {:?} }}\nserde = {{ version = \"1\", features = [\"derive\"] }}\n\n\
             [workspace]\n",
            workspace.join("sdk").display().to_string()
        ),
    )
    .unwrap();
    std::fs::write(krate.join("src").join("main.rs"), MAIN).unwrap();
    // The workspace's lock file, so the same versions are used (and built
    // once, in a target directory of this test's own under the workspace's).
    std::fs::copy(workspace.join("Cargo.lock"), krate.join("Cargo.lock")).unwrap();
    let target = workspace.join("target").join("outside-crate");
    let out = Command::new(env!("CARGO"))
        .arg("build")
        .arg("--quiet")
        .current_dir(&krate)
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "a crate depending on iglu-sdk by path does not build:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let binary = target.join("debug").join("greeter");
    let host = TestHost::start(
        "",
        &[format!(
            "[[plugin]]\nid = \"greeter\"\ncommand = {:?}\n",
            binary.display().to_string()
        )],
    );
    host.wait_state("greeter", "running");
    assert_eq!(
        host.call("greeter", "greet", json!({"name": "outside"}))
            .unwrap(),
        json!({"text": "hello, outside (visit 1)"})
    );
    let _ = std::fs::remove_dir_all(&dir);
}
