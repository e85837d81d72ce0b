//! Hostile input must never stop the pipeline (issue 10): the JWT secret
//! file and token lifetimes, HEAD and unknown methods through the guard,
//! unsigned webhook floods, the webhook body limit, the global concurrency
//! limit and the header-read timeout of the plain and the TLS listener.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use adpipe::api::{Access, ROUTES};
use adpipe::app::App;
use adpipe::auth::{now_unix, JwtKeys, Role};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::json;

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
fn plugin_commands_that_cannot_reach_the_server_say_to_pass_url() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, _) = config_file(dir.path(), "", "");
    let config = config.to_str().expect("utf-8");
    let secret = ("ADPIPE_JWT_SECRET", "0123456789abcdef0123456789abcdef");
    let output = adpipe(&["plugin", "list", "--config", config], &[secret]);
    let text = stderr(&output);
    assert!(!output.status.success(), "{text}");
    assert!(
        text.contains("server.listen of") && text.contains("pass --url http://HOST:PORT"),
        "{text}"
    );
    // With --url given, the address is the user's: no hint.
    let output = adpipe(
        &[
            "plugin",
            "list",
            "--config",
            config,
            "--url",
            "http://127.0.0.1:9",
        ],
        &[secret],
    );
    let text = stderr(&output);
    assert!(
        text.contains("reaching http://127.0.0.1:9") && !text.contains("pass --url"),
        "{text}"
    );
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
    let mut config = meta_config(&dir);
    config.server.watch_plugins = false;
    tune(&mut config);
    let app = App::start(config).await.expect("start");
    (app, dir)
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

fn lead(id: &str) -> String {
    json!({"object": "page", "entry": [{"id": "4455", "time": 1_762_000_000, "changes": [
        {"field": "leadgen", "value": {"ad_id": "a9", "adgroup_id": "a9", "form_id": "77",
            "leadgen_id": id, "created_time": 1_761_998_400, "page_id": "4455"}}
    ]}]})
    .to_string()
}

fn delivery(body: impl Into<Body>, signature: Option<&str>) -> Request<Body> {
    let mut b = Request::post("/v1/webhooks/meta").header("content-type", "application/json");
    if let Some(s) = signature {
        b = b.header("x-hub-signature-256", s);
    }
    b.body(body.into()).expect("request")
}

fn sign(secret: &str, body: &[u8]) -> String {
    format!(
        "sha256={}",
        adpipe::pipeline::signature::hmac_hex(secret.as_bytes(), body)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_webhook_floods_do_not_spend_the_ingest_budget() {
    let secret = "flood-app-secret";
    std::env::set_var("ADPIPE_TEST_FLOOD_APP_SECRET", secret);
    let (app, _dir) = app_with(|c| {
        c.pipelines[0].webhook_secret_env = Some("ADPIPE_TEST_FLOOD_APP_SECRET".into());
        let rate = |per_second, burst| adpipe::config::Rate { per_second, burst };
        c.api.rate_limits.enabled = true;
        c.api.rate_limits.ingest.caller = rate(1, 3);
        c.api.rate_limits.ingest.tenant = rate(1, 3);
    })
    .await;
    // A flood of junk: unsigned, wrongly signed, signed for another body.
    let junk = lead("junk");
    for i in 0..30 {
        let signature = match i % 3 {
            0 => None,
            1 => Some(sign("guessed-secret", junk.as_bytes())),
            _ => Some(sign(secret, b"another body")),
        };
        let answer = send(&app, delivery(junk.clone(), signature.as_deref())).await;
        assert_eq!(
            (answer.status, answer.code()),
            (StatusCode::UNAUTHORIZED, "invalid_signature"),
            "junk delivery {i}: {}",
            answer.text
        );
    }
    // The platform's genuine deliveries still get through, and they are the
    // ones that are charged.
    let mut accepted = 0;
    let mut limited = None;
    for i in 0..6 {
        let body = lead(&format!("L{i}"));
        let answer = send(
            &app,
            delivery(body.clone(), Some(&sign(secret, body.as_bytes()))),
        )
        .await;
        match answer.status {
            StatusCode::ACCEPTED => {
                assert!(answer.headers.contains_key("ratelimit-remaining"));
                accepted += 1;
            }
            StatusCode::TOO_MANY_REQUESTS => {
                limited = Some(answer);
                break;
            }
            other => panic!("delivery {i}: {other} {}", answer.text),
        }
    }
    assert!(accepted >= 3, "the first signed deliveries are accepted");
    let limited = limited.expect("signed deliveries beyond the budget are limited");
    assert_eq!(limited.code(), "rate_limited");
    assert!(limited.headers.contains_key("retry-after"));
    // The handshake is charged only once its verify token matches.
    let answer = send(
        &app,
        request(
            "GET",
            "/v1/webhooks/meta?hub.mode=subscribe&hub.verify_token=x&hub.challenge=1",
            None,
        ),
    )
    .await;
    assert_ne!(
        answer.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        answer.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_bodies_have_their_own_limit() {
    let secret = "limit-app-secret";
    std::env::set_var("ADPIPE_TEST_LIMIT_APP_SECRET", secret);
    let (app, _dir) = app_with(|c| {
        c.pipelines[0].webhook_secret_env = Some("ADPIPE_TEST_LIMIT_APP_SECRET".into());
        c.server.max_body_bytes = 10 * 1024 * 1024;
    })
    .await;
    // Over the default 1 MiB of webhooks, well under server.max_body_bytes.
    let big = vec![b' '; 1024 * 1024 + 1];
    let answer = send(&app, delivery(big.clone(), Some(&sign(secret, &big)))).await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
        "{}",
        answer.text
    );
    assert!(
        answer.text.contains("server.max_webhook_body_bytes"),
        "{}",
        answer.text
    );
    // Report pushes keep server.max_body_bytes.
    let ingest = token("demo", &[Role::Ingest], 60);
    let answer = send(&app, post("/v1/pipelines/meta/reports", Some(&ingest), big)).await;
    assert_ne!(
        answer.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        answer.text
    );
    // Within the limit, a signed delivery is accepted.
    let body = lead("small");
    let answer = send(
        &app,
        delivery(body.clone(), Some(&sign(secret, body.as_bytes()))),
    )
    .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text);
}

/// The host:port of a server's base URL.
fn address(base: &str) -> String {
    base.rsplit("//").next().expect("address").to_owned()
}

/// Send `request` on a new connection and read the whole answer (the
/// request asks the server to close).
fn exchange(address: &str, request: &str) -> String {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(request.as_bytes()).expect("write");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

#[test]
fn over_the_concurrency_limit_requests_get_503_with_retry_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, _) = config_file(dir.path(), "max_concurrent_requests = 1", "");
    let server = Server::spawn(&config, &[("ADPIPE_JWT_SECRET", JWT_SECRET)], &[]);
    let address = address(&server.base);
    let health = "GET /healthz HTTP/1.1\r\nHost: adpipe\r\nConnection: close\r\n\r\n";
    assert!(exchange(&address, health).starts_with("HTTP/1.1 200"));
    // One request in flight: its body is promised and never finishes.
    let admin = token("demo", &[Role::Admin], 60);
    let stall = || {
        let mut slow = TcpStream::connect(&address).expect("connect");
        slow.write_all(
            format!(
                "POST /v1/keys HTTP/1.1\r\nHost: adpipe\r\nAuthorization: Bearer {admin}\r\n\
                 Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\""
            )
            .as_bytes(),
        )
        .expect("write");
        slow.set_read_timeout(Some(Duration::from_millis(20)))
            .expect("read timeout");
        slow
    };
    let mut slow = stall();
    let started = Instant::now();
    let refused = loop {
        let answer = exchange(&address, health);
        if answer.starts_with("HTTP/1.1 503") {
            break answer;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never refused: {answer}"
        );
        // On a loaded machine the stalled request can arrive while the previous
        // health check still holds the one slot, and be refused itself: stall again.
        let mut peek = [0u8; 16];
        if matches!(slow.read(&mut peek), Ok(n) if n > 0) {
            slow = stall();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let lower = refused.to_ascii_lowercase();
    assert!(lower.contains("\r\nretry-after: 1\r\n"), "{refused}");
    assert!(
        refused.contains(r#"{"error":{"code":"overloaded","message":"#),
        "{refused}"
    );
    // Once the slow request ends, the slot is free again.
    drop(slow);
    let started = Instant::now();
    while !exchange(&address, health).starts_with("HTTP/1.1 200") {
        assert!(started.elapsed() < Duration::from_secs(10), "never freed");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Wait for the server to close a stalled connection: the time it took, or
/// `None` if it was still open after `limit`.
fn closed_within(mut stream: impl Read, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buffer = [0u8; 1024];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return Some(started.elapsed()),
            // hyper may answer before closing; keep reading to the end.
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return None
            }
            Err(_) => return Some(started.elapsed()),
        }
        if started.elapsed() > limit {
            return None;
        }
    }
}

const HALF_A_REQUEST: &[u8] = b"GET /v1/insights HTTP/1.1\r\nHost:";

#[test]
fn a_slow_header_client_is_cut_off_on_the_plain_listener() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, _) = config_file(dir.path(), "header_read_timeout_ms = 500", "");
    let server = Server::spawn(&config, &[("ADPIPE_JWT_SECRET", JWT_SECRET)], &[]);
    let mut stream = TcpStream::connect(address(&server.base)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    stream.write_all(HALF_A_REQUEST).expect("write");
    let took = closed_within(&mut stream, Duration::from_secs(5))
        .expect("a client that stops mid-header must be disconnected");
    eprintln!("plain listener: stalled client disconnected after {took:?}");
    assert!(took >= Duration::from_millis(300), "{took:?}");
    // Others are served as before.
    let answer = exchange(
        &address(&server.base),
        "GET /healthz HTTP/1.1\r\nHost: adpipe\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[test]
fn a_slow_header_client_is_cut_off_on_the_tls_listener() {
    use std::sync::Arc;
    use tokio_rustls::rustls;

    let dir = tempfile::tempdir().expect("tempdir");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    std::fs::write(dir.path().join("cert.pem"), cert.cert.pem()).expect("cert");
    std::fs::write(dir.path().join("key.pem"), cert.signing_key.serialize_pem()).expect("key");
    let (config, _) = config_file(
        dir.path(),
        "header_read_timeout_ms = 500",
        "[server.tls]\ncert_file = \"cert.pem\"\nkey_file = \"key.pem\"\n",
    );
    let server = Server::spawn(&config, &[("ADPIPE_JWT_SECRET", JWT_SECRET)], &[]);
    assert!(server.base.starts_with("https://"), "{}", server.base);
    let address = address(&server.base);

    // Connected, no handshake at all.
    let mut idle = TcpStream::connect(&address).expect("connect");
    idle.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let took = closed_within(&mut idle, Duration::from_secs(5))
        .expect("a connection that never starts TLS must be closed");
    eprintln!("TLS listener: silent connection closed after {took:?}");

    // Handshake done, then half a request line.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).expect("root");
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = rustls::ClientConnection::new(Arc::new(client), name).expect("client");
    let mut tcp = TcpStream::connect(&address).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut stream = rustls::Stream::new(&mut tls, &mut tcp);
    stream
        .write_all(HALF_A_REQUEST)
        .expect("handshake and write");
    let took = closed_within(&mut stream, Duration::from_secs(5))
        .expect("a TLS client that stops mid-header must be disconnected");
    eprintln!("TLS listener: stalled client disconnected after {took:?}");
    assert!(took >= Duration::from_millis(300), "{took:?}");
}
