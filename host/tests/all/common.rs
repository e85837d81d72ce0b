//! Shared helpers: plugin artifacts, an in-process app on a temp data dir,
//! requests through the router, tokens.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use adpipe::app::App;
use adpipe::auth::{now_unix, Claims, JwtKeys, Role};
use adpipe::config::{Config, PipelineConfig, PluginConfig};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use tower::ServiceExt;

pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret-0123";

/// Path of a built plugin component (`scripts/build-plugins` puts them in `dist/plugins/`).
pub fn plugin_path(name: &str) -> PathBuf {
    let dir = std::env::var_os("ADPIPE_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dist/plugins"));
    let path = dir.join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/build-plugins first",
        path.display()
    );
    path
}

pub fn plugin(name: &str) -> PluginConfig {
    PluginConfig {
        name: name.into(),
        path: plugin_path(name),
        time_limit_ms: 500,
        memory_limit_mb: 64,
        kind: adpipe::config::PluginKind::Adapter,
        fuel: None,
        max_concurrent_calls: None,
    }
}

pub fn pipeline(name: &str, tenant: &str, adapter: &str) -> PipelineConfig {
    PipelineConfig {
        name: name.into(),
        tenant: tenant.into(),
        adapter: adapter.into(),
        webhook_secret_env: None,
        verify_token_env: None,
        account_id: None,
        webhook_accounts: None,
        currency: None,
        timezone: chrono_tz::UTC,
        metrics: vec![],
        pull: None,
        time_limit_ms: None,
        memory_limit_mb: None,
        fuel: None,
        options: Default::default(),
    }
}

/// A config on a fresh temp dir with the given plugins and pipelines.
pub fn config(
    dir: &tempfile::TempDir,
    plugins: Vec<PluginConfig>,
    pipelines: Vec<PipelineConfig>,
) -> Config {
    let mut config = Config::default();
    config.server.data_dir = dir.path().to_path_buf();
    config.server.max_body_bytes = 1024 * 1024;
    config.auth.jwt_secret = Some(JWT_SECRET.into());
    // Load tests would trip the default limits; tests of limits turn them on.
    config.api.rate_limits.enabled = false;
    config.plugins = plugins;
    config.pipelines = pipelines;
    let issues = config.validate("test");
    assert!(issues.is_empty(), "test config invalid: {issues:?}");
    config
}

pub fn token(tenant: &str, roles: &[Role], ttl_secs: i64) -> String {
    let keys = JwtKeys::hs256(JWT_SECRET.as_bytes(), None);
    keys.mint(&Claims {
        sub: "test".into(),
        tenant: tenant.into(),
        roles: roles.to_vec(),
        exp: (now_unix() as i64 + ttl_secs) as u64,
        iat: None,
        nbf: None,
        iss: None,
        aud: None,
    })
    .expect("mint")
}

/// An answer: status, headers, body parsed as JSON when it is JSON.
pub struct Answer {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub text: String,
    pub json: serde_json::Value,
}

impl Answer {
    pub fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }
}

/// Send one request through the router.
pub async fn send(app: &App, request: Request<Body>) -> Answer {
    let response = adpipe::api::router(app.clone())
        .oneshot(request)
        .await
        .expect("router answers");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    Answer {
        status,
        headers,
        text,
        json,
    }
}

/// An empty-bodied request, with a bearer token when given.
pub fn request(method: &str, uri: &str, token: Option<&str>) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    b.body(Body::empty()).expect("request")
}

pub fn get(uri: &str, token: Option<&str>) -> Request<Body> {
    request("GET", uri, token)
}

pub fn post(uri: &str, token: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut b = Request::post(uri).header("content-type", "application/json");
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    b.body(body.into()).expect("request")
}

/// [`config`] with one Meta pipeline, `meta` of tenant `demo`.
pub fn meta_config(dir: &tempfile::TempDir) -> Config {
    config(
        dir,
        vec![plugin("meta")],
        vec![pipeline("meta", "demo", "meta")],
    )
}

/// An app started on [`meta_config`].
pub async fn meta_app(dir: &tempfile::TempDir) -> App {
    App::start(meta_config(dir)).await.expect("start")
}

/// A real `adpipe serve` process, killed with SIGKILL when dropped.
pub struct Server {
    child: Child,
    pub base: String,
}

impl Server {
    /// Start `adpipe serve --config CONFIG ARGS...` with exactly the adpipe variables
    /// in `env`, and wait until it listens.
    pub fn spawn(config: &std::path::Path, env: &[(&str, &str)], args: &[&str]) -> Server {
        Server::spawn_command(
            Command::new(env!("CARGO_BIN_EXE_adpipe")),
            config,
            env,
            args,
        )
    }

    /// [`Server::spawn`] with `dir` as the working directory (relative paths
    /// of the configuration, such as `data_dir`, are taken from there).
    pub fn spawn_in(
        dir: &std::path::Path,
        config: &std::path::Path,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_adpipe"));
        command.current_dir(dir);
        Server::spawn_command(command, config, env, args)
    }

    fn spawn_command(
        mut command: Command,
        config: &std::path::Path,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Server {
        command
            .args(["serve", "--config"])
            .arg(config)
            .args(args)
            .env_remove("ADPIPE_JWT_SECRET")
            .env_remove("ADPIPE_AUTH__JWT_SECRET")
            .env("ADPIPE_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("spawn adpipe");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let base = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(url) = line.strip_prefix("adpipe listening on ") {
                        break url.trim().to_owned();
                    }
                }
                _ => {
                    let status = child.wait().expect("wait");
                    panic!("adpipe exited before listening: {status}");
                }
            }
        };
        // Keep draining stdout (logs) so the child never blocks on a full
        // pipe; pass it on, so a failing test shows what the server said.
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                eprintln!("[adpipe] {line}");
            }
        });
        Server { child, base }
    }
}

impl Server {
    /// Wait up to `timeout` for the process to exit on its own.
    pub fn wait_exit(&mut self, timeout: std::time::Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A shared engine (or the program of one) that some tests need. `scripts/services.sh up`
/// starts them on 127.0.0.1; the `ADPIPE_TEST_*` variables point elsewhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Postgres,
    Redis,
    ClickHouse,
    /// The shared Kafka-protocol broker.
    Kafka,
    /// Two ClickHouse servers as the shards of `adpipe_shards` (scripts/clickhouse-shards).
    ClickHouseShards,
    /// The tansu program, for tests that start a private broker.
    Tansu,
    /// The redis-server program, for tests that start a private (TLS) Redis.
    RedisServer,
}

impl Engine {
    fn name(self) -> &'static str {
        match self {
            Engine::Postgres => "PostgreSQL",
            Engine::Redis => "Redis",
            Engine::ClickHouse => "ClickHouse",
            Engine::ClickHouseShards => "the two ClickHouse shards (scripts/clickhouse-shards up)",
            Engine::Kafka => "the Kafka-protocol broker",
            Engine::Tansu => "tansu",
            Engine::RedisServer => "redis-server",
        }
    }

    /// The URL (broker list, program) tests use for it: its `ADPIPE_TEST_*` variable,
    /// else the default.
    pub fn url(self) -> String {
        let (var, default) = match self {
            Engine::Postgres => (
                "ADPIPE_TEST_POSTGRES_URL",
                "postgres://postgres@127.0.0.1:5432/test".to_owned(),
            ),
            Engine::Redis => ("ADPIPE_TEST_REDIS_URL", "redis://127.0.0.1:6379".to_owned()),
            Engine::ClickHouse => (
                "ADPIPE_TEST_CLICKHOUSE_URL",
                "http://127.0.0.1:8123".to_owned(),
            ),
            Engine::Kafka => ("ADPIPE_TEST_KAFKA_BROKERS", "127.0.0.1:9092".to_owned()),
            Engine::ClickHouseShards => (
                "ADPIPE_TEST_CLICKHOUSE_SHARDS",
                "http://127.0.0.1:8124,http://127.0.0.1:8125".to_owned(),
            ),
            Engine::Tansu => ("ADPIPE_TEST_TANSU", {
                let home = std::env::var("HOME").unwrap_or_default();
                format!("{home}/.cargo/adpipe-tansu-0.6.0-sqlite/bin/tansu")
            }),
            Engine::RedisServer => ("ADPIPE_TEST_REDIS_SERVER", "redis-server".to_owned()),
        };
        std::env::var(var).unwrap_or(default)
    }

    /// Why a test cannot use it now (`None`: it can): a TCP connect to its
    /// address, or the program looked up.
    fn unavailable(self) -> Option<String> {
        let url = self.url();
        match self {
            Engine::Tansu | Engine::RedisServer => {
                (!program_found(&url)).then(|| format!("{} not found at {url}", self.name()))
            }
            Engine::ClickHouseShards => url
                .split(',')
                .map(host_port)
                .find(|address| !reachable(address))
                .map(|address| format!("{} not reachable at {address}", self.name())),
            _ => {
                let address = host_port(&url);
                (!reachable(address)).then(|| format!("{} not reachable at {address}", self.name()))
            }
        }
    }
}

/// What a distributed-mode `adpipe serve` uses: the bus, the store, metadata and the cache.
pub const DISTRIBUTED_ENGINES: [Engine; 4] = [
    Engine::Kafka,
    Engine::ClickHouse,
    Engine::Postgres,
    Engine::Redis,
];

/// `host:port` of an engine URL or broker list: `postgres://u@h:5432/db` → `h:5432`,
/// `a:9092,b:9092` → `a:9092`.
pub fn host_port(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', ',']).next().unwrap_or(rest);
    authority.rsplit_once('@').map_or(authority, |(_, hp)| hp)
}

fn reachable(address: &str) -> bool {
    use std::net::ToSocketAddrs as _;
    let timeout = std::time::Duration::from_millis(500);
    address.to_socket_addrs().is_ok_and(|mut addrs| {
        addrs.any(|a| std::net::TcpStream::connect_timeout(&a, timeout).is_ok())
    })
}

fn program_found(program: &str) -> bool {
    if program.contains('/') {
        return std::path::Path::new(program).is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// What an engine test does given the reasons its engines are unavailable.
#[derive(Debug, PartialEq, Eq)]
pub enum EngineGate {
    Run,
    /// Skip, saying why (engines missing on a laptop).
    Skip(String),
    /// Fail, saying why (engines missing where `ADPIPE_REQUIRE_ENGINES=1`: scripts/test, CI).
    Fail(String),
}

impl EngineGate {
    pub fn decide(missing: &[String], require: bool) -> EngineGate {
        if missing.is_empty() {
            return EngineGate::Run;
        }
        let why = format!(
            "{} (start them with scripts/services.sh up)",
            missing.join(", ")
        );
        if require {
            EngineGate::Fail(format!(
                "{why}; ADPIPE_REQUIRE_ENGINES is set, so this fails instead of skipping"
            ))
        } else {
            EngineGate::Skip(why)
        }
    }
}

/// Whether a test can use `engines`. Call it first: `if !engines_available(&[..]) { return; }`.
/// An engine missing makes the test pass after one `skipped: ...` line on stderr, or
/// panic when `ADPIPE_REQUIRE_ENGINES` is set (to anything but `0`).
pub fn engines_available(engines: &[Engine]) -> bool {
    let missing: Vec<String> = engines.iter().filter_map(|e| e.unavailable()).collect();
    let require = std::env::var("ADPIPE_REQUIRE_ENGINES").is_ok_and(|v| !v.is_empty() && v != "0");
    let test = std::thread::current().name().unwrap_or("test").to_owned();
    match EngineGate::decide(&missing, require) {
        EngineGate::Run => true,
        EngineGate::Skip(why) => {
            // Straight to stderr, past the test harness's capture, so `cargo test` shows it.
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "skipped {test}: {why}");
            false
        }
        EngineGate::Fail(why) => panic!("{test}: {why}"),
    }
}

/// `POST /v1/pipelines/{name}/pull` as the tenant's admin (must answer 200);
/// the first account's run.
pub async fn pull_now(app: &App, name: &str) -> serde_json::Value {
    let admin = token("demo", &[adpipe::auth::Role::Admin], 60);
    let answer = send(
        app,
        post(&format!("/v1/pipelines/{name}/pull"), Some(&admin), ""),
    )
    .await;
    assert_eq!(answer.status, axum::http::StatusCode::OK, "{}", answer.text);
    answer.json["runs"][0].clone()
}

#[cfg(test)]
mod engine_gate {
    use super::*;

    #[test]
    fn runs_when_nothing_is_missing_skips_or_fails_otherwise() {
        assert_eq!(EngineGate::decide(&[], false), EngineGate::Run);
        assert_eq!(EngineGate::decide(&[], true), EngineGate::Run);
        let missing = vec![
            "ClickHouse not reachable at 127.0.0.1:8123".to_owned(),
            "tansu not found at /x/tansu".to_owned(),
        ];
        let both = "ClickHouse not reachable at 127.0.0.1:8123, tansu not found at /x/tansu \
                    (start them with scripts/services.sh up)";
        assert_eq!(
            EngineGate::decide(&missing, false),
            EngineGate::Skip(both.to_owned())
        );
        match EngineGate::decide(&missing, true) {
            EngineGate::Fail(why) => {
                assert!(why.starts_with(both), "{why}");
                assert!(why.contains("ADPIPE_REQUIRE_ENGINES"), "{why}");
            }
            other => panic!("required engines missing must fail, got {other:?}"),
        }
    }

    #[test]
    fn addresses_come_out_of_engine_urls() {
        assert_eq!(
            host_port("postgres://postgres@127.0.0.1:5432/test"),
            "127.0.0.1:5432"
        );
        assert_eq!(host_port("redis://127.0.0.1:6379"), "127.0.0.1:6379");
        assert_eq!(host_port("http://user:pw@ch.local:8123/"), "ch.local:8123");
        assert_eq!(host_port("10.0.0.1:9092,10.0.0.2:9092"), "10.0.0.1:9092");
    }

    #[test]
    fn a_listening_port_is_reachable_and_a_closed_one_is_not() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let open = listener.local_addr().expect("addr").to_string();
        assert!(reachable(&open));
        drop(listener);
        assert!(!reachable(&open), "{open} closed");
        assert!(!program_found("/nonexistent/adpipe-no-such-program"));
        assert!(program_found("sh"), "sh on PATH");
    }
}
