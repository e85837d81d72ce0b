//! `docs/plugin-tutorial.md`, followed step by step: scaffold, native tests,
//! build the component, test it on fixtures (bless, then compare), load it
//! into a real server, ingest, query.

use std::path::PathBuf;
use std::process::Command;

use adpipe::auth::Role;
use serde_json::Value;

use crate::common::*;

fn run(command: &mut Command) -> String {
    let output = command.output().expect("spawn");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{command:?} failed:\n{text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugin_tutorial_works_as_written() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let doc = std::fs::read_to_string(root.join("docs/plugin-tutorial.md")).expect("tutorial");
    for step in [
        "adpipe plugin new acme --dir plugins/adapters/acme",
        "cargo test --manifest-path plugins/adapters/acme/Cargo.toml",
        "cargo build --release --target wasm32-wasip2 --manifest-path plugins/adapters/acme/Cargo.toml",
        "--fixtures plugins/adapters/acme/tests/fixtures --bless",
        "/v1/pipelines/acme/reports",
    ] {
        assert!(doc.contains(step), "the tutorial lost the step `{step}`");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let krate = dir.path().join("plugins/adapters/acme");
    let adpipe = env!("CARGO_BIN_EXE_adpipe");
    // The tutorial's build shares one cached target directory across runs.
    let target = root.join("target/tutorial");

    run(Command::new(adpipe)
        .args(["plugin", "new", "acme", "--dir"])
        .arg(&krate)
        .arg("--sdk")
        .arg(root.join("plugins/sdk/adapter")));
    let manifest = krate.join("Cargo.toml");
    run(Command::new("cargo")
        .args(["test", "--manifest-path"])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", &target));
    run(Command::new("cargo")
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", &target));
    let wasm = target.join("wasm32-wasip2/release/adpipe_plugin_acme.wasm");
    let fixtures = krate.join("tests/fixtures");
    let blessed = run(Command::new(adpipe)
        .arg("plugin")
        .arg("test")
        .arg(&wasm)
        .arg("--fixtures")
        .arg(&fixtures)
        .arg("--bless"));
    assert!(
        blessed.contains("1 fixture(s), 0 mismatch(es)"),
        "{blessed}"
    );
    assert!(fixtures.join("report.expected.json").exists());
    let compared = run(Command::new(adpipe)
        .arg("plugin")
        .arg("test")
        .arg(&wasm)
        .arg("--fixtures")
        .arg(&fixtures));
    assert!(compared.contains(" ok\n"), "{compared}");
    // A changed expectation is caught.
    let expected = fixtures.join("report.expected.json");
    let text = std::fs::read_to_string(&expected)
        .expect("expected")
        .replace("45500000", "45500001");
    std::fs::write(&expected, text).expect("edit");
    let status = Command::new(adpipe)
        .arg("plugin")
        .arg("test")
        .arg(&wasm)
        .arg("--fixtures")
        .arg(&fixtures)
        .status()
        .expect("spawn");
    assert!(!status.success(), "a mismatch must fail");

    // Load into a running server and ingest.
    let config = dir.path().join("pipelines.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n\n[[plugins]]\nname = \"acme\"\npath = \"{}\"\n\n\
             [[pipelines]]\nname = \"acme\"\ntenant = \"demo\"\nadapter = \"acme\"\n",
            dir.path().join("data").display(),
            wasm.display()
        ),
    )
    .expect("config");
    let server = Server::spawn(&config, &[("ADPIPE_JWT_SECRET", JWT_SECRET)], &[]);
    let client = reqwest::Client::new();
    let admin = token("demo", &[Role::Admin], 60);
    let response = client
        .post(format!("{}/v1/pipelines/acme/reports", server.base))
        .bearer_auth(&admin)
        .body(std::fs::read(fixtures.join("report.json")).expect("fixture"))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 202);
    assert_eq!(response.json::<Value>().await.expect("json")["accepted"], 3);
    let answer: Value = client
        .get(format!(
            "{}/v1/insights?from=2026-11-01&to=2026-11-30&granularity=total&platform=acme",
            server.base
        ))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("insights")
        .json()
        .await
        .expect("json");
    assert_eq!(answer["rows"][0]["spend"], 87.75);
    assert_eq!(answer["rows"][0]["conversions"], 4.0);
    assert_eq!(answer["rows"][0]["impressions"], 2500);
}
