//! The README's quickstart, as written: the default `pipelines.toml`, a token
//! from `adpipe token` (secret generated in the data directory), the fixture
//! and the insights query the README names. Only host, port and data
//! directory differ.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::common::Server;

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
        .expect("README.md")
}

/// The text after `marker` up to the next character in `stops`.
fn after<'a>(text: &'a str, marker: &str, stops: &[char]) -> &'a str {
    let start = text
        .find(marker)
        .unwrap_or_else(|| panic!("README lost `{marker}`"))
        + marker.len();
    let rest = &text[start..];
    &rest[..rest.find(stops).unwrap_or(rest.len())]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quickstart_works_as_written() {
    let readme = readme();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let fixture = after(&readme, "--data-binary @", &[' ', '\n']);
    let insights_query = after(&readme, "/v1/insights?", &['"']);
    assert!(readme.contains("adpipe token --tenant demo --role admin"));

    let data = tempfile::tempdir().expect("tempdir");
    let data_dir = data.path().to_string_lossy().into_owned();
    let config = root.join("pipelines.toml");
    let server = Server::spawn(
        &config,
        &[],
        &["--listen", "127.0.0.1:0", "--data-dir", &data_dir],
    );

    let output = Command::new(env!("CARGO_BIN_EXE_adpipe"))
        .args([
            "token",
            "--tenant",
            "demo",
            "--role",
            "admin",
            "--data-dir",
            &data_dir,
            "--config",
        ])
        .arg(&config)
        .env_remove("ADPIPE_JWT_SECRET")
        .env_remove("ADPIPE_AUTH__JWT_SECRET")
        .output()
        .expect("adpipe token");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout)
        .expect("utf8")
        .trim()
        .to_owned();
    assert_eq!(token.split('.').count(), 3, "prints only the token");

    let body = std::fs::read(root.join(fixture)).expect("README's fixture");
    let native = adpipe_plugin_meta::parse_report(&body, &Default::default())
        .expect("fixture parses natively");
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{}/v1/pipelines/meta/reports", server.base))
        .bearer_auth(&token)
        .body(body)
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 202);
    let accepted: Value = response.json().await.expect("json");
    assert_eq!(accepted["accepted"], native.rows.len());

    let response = client
        .get(format!("{}/v1/insights?{insights_query}", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .expect("insights");
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.expect("json");
    let rows = answer["rows"].as_array().expect("rows");
    assert!(
        !rows.is_empty(),
        "the README's query must show the fixture's data"
    );
    let shown: i64 = rows.iter().filter_map(|r| r["impressions"].as_i64()).sum();
    let (from, to) = (
        after(insights_query, "from=", &['&']),
        after(insights_query, "to=", &['&']),
    );
    let expected: u64 = native
        .rows
        .iter()
        .filter(|r| {
            let d = r.date.to_string();
            d.as_str() >= from && d.as_str() <= to
        })
        .map(|r| r.impressions)
        .sum();
    assert_eq!(shown as u64, expected);

    let response = client
        .get(format!("{}/v1/campaigns", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .expect("campaigns");
    let campaigns: Value = response.json().await.expect("json");
    assert!(!campaigns["campaigns"].as_array().expect("list").is_empty());
}
