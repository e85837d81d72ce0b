//! `docs/plugin-tutorial.md`, followed step by step in a temporary folder
//! outside the repository, with cargo's default target directory and
//! `adpipe` on the `PATH`: scaffold (the SDK carried along), native tests,
//! `plugin build`, `plugin test` (bless, then compare), the configuration
//! block of the tutorial itself, `check`, `serve --config`, ingest, query,
//! samples, then a second version installed by `plugin build` and hot-reloaded
//! by the running server, and a build failing its samples kept out.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use adpipe::auth::Role;
use serde_json::Value;

use crate::common::*;

/// Run `program args` in `dir` as a user would: `adpipe` on the `PATH`, no
/// target-directory override inherited from the test's own cargo.
fn user(dir: &Path, program: &str, args: &[&str]) -> Command {
    let adpipe = PathBuf::from(env!("CARGO_BIN_EXE_adpipe"));
    let bin = adpipe.parent().expect("bin dir");
    let path = std::env::join_paths(std::iter::once(bin.to_owned()).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .expect("PATH");
    let mut command = Command::new(program);
    command
        .args(args)
        .current_dir(dir)
        .env("PATH", path)
        .env("ADPIPE_LOG", "warn")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("ADPIPE_JWT_SECRET")
        .env_remove("ADPIPE_AUTH__JWT_SECRET");
    command
}

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

/// The tutorial's fenced block of `lang` that contains `marker`.
fn block(doc: &str, lang: &str, marker: &str) -> String {
    doc.split(&format!("```{lang}\n"))
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .find(|b| b.contains(marker))
        .unwrap_or_else(|| panic!("the tutorial lost its ```{lang} block with `{marker}`"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugin_tutorial_works_as_written_outside_the_repository() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let doc = std::fs::read_to_string(root.join("docs/plugin-tutorial.md")).expect("tutorial");
    let steps = [
        "adpipe plugin new acme",
        "cd acme && cargo test && cd ..",
        "adpipe plugin build acme --out dist/plugins/acme.wasm",
        "adpipe plugin test dist/plugins/acme.wasm --fixtures acme/tests/fixtures --bless",
        "adpipe check",
        "adpipe serve --config pipelines.toml",
        "/v1/pipelines/acme/reports",
        "mkdir -p dist/plugins/acme.samples",
        "cp acme/tests/fixtures/report.json acme/tests/fixtures/report.expected.json dist/plugins/acme.samples/",
        "adpipe plugin build acme\n",
        "adpipe plugin list --url http://127.0.0.1:8080",
    ];
    for step in steps {
        assert!(doc.contains(step), "the tutorial lost the step `{step}`");
    }
    let work = tempfile::tempdir().expect("tempdir");
    let work = work.path();
    assert!(
        !work.starts_with(root.canonicalize().expect("root")),
        "the tutorial runs outside the repository"
    );

    // 1. Scaffold, with the SDK carried along.
    run(&mut user(work, "adpipe", &["plugin", "new", "acme"]));
    let krate = work.join("acme");
    assert!(krate.join("adpipe-plugin-sdk/wit/adapter.wit").is_file());

    // 3. Native tests, then build and install, then fixtures.
    run(&mut user(&krate, "cargo", &["test"]));
    // One wit-bindgen in the crate's lockfile: the SDK's, nothing older.
    let lock = std::fs::read_to_string(krate.join("Cargo.lock")).expect("lockfile");
    assert_eq!(
        lock.matches("name = \"wit-bindgen\"\n").count(),
        1,
        "{lock}"
    );
    let built = run(&mut user(
        work,
        "adpipe",
        &["plugin", "build", "acme", "--out", "dist/plugins/acme.wasm"],
    ));
    let wasm = work.join("dist/plugins/acme.wasm");
    let size = std::fs::metadata(&wasm).expect("installed").len();
    assert!(
        built.contains("dist/plugins/acme.wasm") && built.contains(" KB"),
        "{built}"
    );
    assert!(size < 1_000_000, "the scaffold's component is {size} bytes");
    // Built in the crate's own target directory, where cargo puts it by default.
    assert!(krate
        .join("target/wasm32-wasip2/release/adpipe_plugin_acme.wasm")
        .is_file());
    let blessed = run(&mut user(
        work,
        "adpipe",
        &[
            "plugin",
            "test",
            "dist/plugins/acme.wasm",
            "--fixtures",
            "acme/tests/fixtures",
            "--bless",
        ],
    ));
    assert!(
        blessed.contains("1 fixture(s), 0 mismatch(es)"),
        "{blessed}"
    );
    let fixtures = krate.join("tests/fixtures");
    let expected = fixtures.join("report.expected.json");
    let compared = run(&mut user(
        work,
        "adpipe",
        &[
            "plugin",
            "test",
            "dist/plugins/acme.wasm",
            "--fixtures",
            "acme/tests/fixtures",
        ],
    ));
    assert!(compared.contains(" ok\n"), "{compared}");
    // A changed expectation is caught.
    let blessed_text = std::fs::read_to_string(&expected).expect("expected");
    std::fs::write(&expected, blessed_text.replace("45500000", "45500001")).expect("edit");
    let status = user(
        work,
        "adpipe",
        &[
            "plugin",
            "test",
            "dist/plugins/acme.wasm",
            "--fixtures",
            "acme/tests/fixtures",
        ],
    )
    .status()
    .expect("spawn");
    assert!(!status.success(), "a mismatch must fail");
    std::fs::write(&expected, &blessed_text).expect("restore");

    // 4. The tutorial's own configuration, on a free port; check; serve.
    let config = block(&doc, "toml", "[server]").replace("127.0.0.1:8080", "127.0.0.1:0");
    std::fs::write(work.join("pipelines.toml"), &config).expect("config");
    let checked = run(&mut user(work, "adpipe", &["check"]));
    assert!(
        checked.contains("OK") && checked.contains("plugins loaded"),
        "{checked}"
    );
    let server = Server::spawn_in(
        work,
        Path::new("pipelines.toml"),
        &[("ADPIPE_JWT_SECRET", JWT_SECRET)],
        &[],
    );
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

    // 5. Samples beside the component.
    let samples = work.join("dist/plugins/acme.samples");
    std::fs::create_dir_all(&samples).expect("samples");
    for file in ["report.json", "report.expected.json"] {
        std::fs::copy(fixtures.join(file), samples.join(file)).expect("copy sample");
    }

    // A second version, installed where pipelines.toml points, reloaded live.
    let manifest = krate.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    std::fs::write(
        &manifest,
        text.replacen("version = \"0.1.0\"", "version = \"0.2.0\"", 1),
    )
    .expect("bump");
    let rebuilt = run(&mut user(work, "adpipe", &["plugin", "build", "acme"]));
    assert!(rebuilt.contains("acme 0.2.0"), "{rebuilt}");
    let listed = wait_for_version(&server.base, work, "0.2.0").await;
    assert!(listed.contains("\"version\": \"0.2.0\""), "{listed}");

    // A build that breaks its own sample is refused by `plugin build` and
    // never reaches the watched path: the server keeps serving 0.2.0.
    let lib = krate.join("src/lib.rs");
    let source = std::fs::read_to_string(&lib).expect("lib.rs");
    let broken = source.replace(
        "clicks: count(&line.clicks, \"clicks\")?,",
        "clicks: count(&line.clicks, \"clicks\")? + 1,",
    );
    assert_ne!(broken, source, "the scaffold's clicks line moved");
    std::fs::write(&lib, broken).expect("break");
    let before = std::fs::read(&wasm).expect("installed");
    let output = user(work, "adpipe", &["plugin", "build", "acme"])
        .output()
        .expect("spawn");
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "a build failing its sample must fail"
    );
    assert!(
        said.contains("report.json") && said.contains("other rows"),
        "{said}"
    );
    assert_eq!(std::fs::read(&wasm).expect("installed"), before);
}

/// Poll `adpipe plugin list --url` (as the tutorial shows it) until `acme`
/// serves `version`; its output.
async fn wait_for_version(base: &str, work: &Path, version: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let output = user(work, "adpipe", &["plugin", "list", "--url", base])
            .env("ADPIPE_JWT_SECRET", JWT_SECRET)
            .output()
            .expect("spawn");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        if text.contains(&format!("\"version\": \"{version}\"")) || Instant::now() > deadline {
            return text + &String::from_utf8_lossy(&output.stderr);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
