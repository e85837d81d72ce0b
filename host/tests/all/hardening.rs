//! Hostile input must never stop the pipeline (issue 10): the JWT secret
//! file and token lifetimes, HEAD and unknown methods through the guard,
//! unsigned webhook floods, the webhook body limit, the global concurrency
//! limit and the header-read timeout of the plain and the TLS listener.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use adpipe::api::{Access, ROUTES};
use adpipe::app::App;
use adpipe::auth::{now_unix, JwtKeys, Role};
use axum::body::Body;
use axum::http::{Request, StatusCode};

use crate::common::*;

/// Run `adpipe ARGS` with only the adpipe variables in `env`; fail the test
/// if it is still running after a minute (e.g. a server that should have
/// refused to start).
fn adpipe(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_adpipe"));
    command
        .args(args)
        .env_remove("ADPIPE_JWT_SECRET")
        .env_remove("ADPIPE_AUTH__JWT_SECRET")
        .env("ADPIPE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("spawn adpipe");
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let output = child.wait_with_output().expect("output");
            panic!(
                "adpipe {args:?} was still running after 60 s:\n{}",
                String::from_utf8_lossy(&output.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A config file in `dir` with a data directory beside it and `extra` TOML
/// appended (after `[server]`, so it may add keys to it).
fn config_file(dir: &Path, server_extra: &str, extra: &str) -> (PathBuf, PathBuf) {
    let data = dir.join("data");
    let config = dir.join("adpipe.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nwatch_plugins = false\n{server_extra}\n{extra}",
            data.display()
        ),
    )
    .expect("write config");
    (config, data)
}

#[test]
fn a_short_jwt_secret_is_refused_at_start_from_the_file_or_the_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, data) = config_file(dir.path(), "", "");
    std::fs::create_dir_all(&data).expect("data dir");
    std::fs::write(data.join("jwt-secret"), "guessable\n").expect("write secret");
    let config = config.to_str().expect("utf-8 path");
    for args in [
        vec!["serve", "--config", config],
        vec![
            "token", "--tenant", "demo", "--role", "viewer", "--config", config,
        ],
    ] {
        let output = adpipe(&args, &[]);
        let text = stderr(&output);
        assert!(!output.status.success(), "{args:?} must refuse: {text}");
        assert!(
            text.contains("jwt-secret") && text.contains("9 bytes; at least 32 are needed"),
            "{args:?}: {text}"
        );
    }
    // From the environment: refused by the configuration check, naming its sources.
    std::fs::remove_file(data.join("jwt-secret")).expect("remove");
    let output = adpipe(
        &["serve", "--config", config],
        &[("ADPIPE_JWT_SECRET", "short")],
    );
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(
        text.contains("auth.jwt_secret") && text.contains("ADPIPE_JWT_SECRET"),
        "{text}"
    );
    assert!(text.contains("at least 32"), "{text}");
}

#[test]
fn public_key_mode_needs_an_audience() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jwt/rsa-public.pem");
    let (config, _) = config_file(
        dir.path(),
        "",
        &format!("[auth]\npublic_key_file = \"{}\"\n", key.display()),
    );
    let output = adpipe(&["check", "--config", config.to_str().expect("utf-8")], &[]);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(
        text.contains("adpipe.toml: auth.audience: auth.public_key_file is set"),
        "{text}"
    );
    std::fs::write(
        &config,
        std::fs::read_to_string(&config).expect("read") + "audience = \"adpipe\"\n",
    )
    .expect("write");
    let output = adpipe(&["check", "--config", config.to_str().expect("utf-8")], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn token_lifetimes_are_capped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, _) = config_file(dir.path(), "", "");
    let config = config.to_str().expect("utf-8");
    let env = [("ADPIPE_JWT_SECRET", JWT_SECRET)];
    let mint = |ttl: &str, extra_env: &[(&str, &str)]| {
        let mut env = env.to_vec();
        env.extend_from_slice(extra_env);
        adpipe(
            &[
                "token", "--tenant", "demo", "--role", "viewer", "--ttl", ttl, "--config", config,
            ],
            &env,
        )
    };
    let output = mint("31d", &[]);
    let text = stderr(&output);
    assert!(!output.status.success(), "a 31-day token must be refused");
    assert!(
        text.contains(
            "--ttl 31d is longer than the longest lifetime allowed, 30d (auth.max_token_ttl)"
        ),
        "{text}"
    );
    assert!(output.stdout.is_empty(), "no token printed");
    let output = mint("30d", &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let token = String::from_utf8(output.stdout).expect("utf-8");
    let claims = JwtKeys::hs256(JWT_SECRET.as_bytes(), None)
        .verify(token.trim())
        .expect("valid");
    assert!(claims.exp <= now_unix() + 30 * 86_400);
    // The cap is configurable.
    let tighter = [("ADPIPE_AUTH__MAX_TOKEN_TTL", "2h")];
    let output = mint("3h", &tighter);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("allowed, 2h"),
        "{}",
        stderr(&output)
    );
    assert!(mint("2h", &tighter).status.success());
}

async fn app_with(tune: impl FnOnce(&mut adpipe::config::Config)) -> (App, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(
        &dir,
        vec![plugin("meta")],
        vec![pipeline("meta", "demo", "meta")],
    );
    config.server.watch_plugins = false;
    tune(&mut config);
    let app = App::start(config).await.expect("start");
    (app, dir)
}

fn request(method: &str, uri: &str, token: Option<&str>) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    b.body(Body::empty()).expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_and_unknown_methods_go_through_the_guard() {
    let (app, _dir) = app_with(|c| {
        c.api.rate_limits.enabled = true;
    })
    .await;
    let viewer = token("demo", &[Role::Viewer], 60);
    let mut checked = 0;
    for route in ROUTES.iter().filter(|r| r.method == "GET") {
        let mut uri = route.path.replace("{pipeline}", "meta");
        if uri == "/v1/insights" {
            uri.push_str("?from=2026-11-01&to=2026-11-02");
        }
        match route.access {
            Access::Public | Access::Webhook => continue,
            Access::Authenticated | Access::Role(_) => {}
        }
        let answer = send(&app, request("HEAD", &uri, None)).await;
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "HEAD {uri} without a token"
        );
        assert!(answer.text.is_empty(), "HEAD {uri} has no body");
        let answer = send(&app, request("HEAD", &uri, Some(&viewer))).await;
        let expected = match route.access {
            Access::Role(required) if !Role::Viewer.grants(required) => StatusCode::FORBIDDEN,
            _ => StatusCode::OK,
        };
        assert_eq!(answer.status, expected, "HEAD {uri} as viewer");
        // The same budget as GET.
        assert!(
            answer.headers.contains_key("ratelimit-remaining") || expected != StatusCode::OK,
            "HEAD {uri} draws from the rate limit: {:?}",
            answer.headers
        );
        checked += 1;
    }
    assert!(checked >= 8, "{checked}");

    // Unknown methods: 405 with the JSON error and Allow.
    for (method, uri, allowed) in [
        ("PUT", "/v1/insights", "GET"),
        ("DELETE", "/openapi.json", "GET"),
        ("PATCH", "/v1/webhooks/meta", "POST"),
        ("POST", "/healthz", "GET"),
        ("PUT", "/v1/keys", "POST"),
    ] {
        let answer = send(&app, request(method, uri, Some(&viewer))).await;
        assert_eq!(
            (answer.status, answer.code()),
            (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            "{method} {uri}: {}",
            answer.text
        );
        assert!(
            answer.json["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(method)),
            "{}",
            answer.text
        );
        let allow = answer
            .headers
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(allow.contains(allowed), "{method} {uri}: Allow `{allow}`");
    }
    // Unknown paths stay 404.
    let answer = send(&app, request("PUT", "/v1/nothing", None)).await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::NOT_FOUND, "not_found")
    );
}
