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
        currency: None,
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

/// A real `adpipe serve` process, killed with SIGKILL when dropped.
pub struct Server {
    child: Child,
    pub base: String,
}

impl Server {
    /// Start `adpipe serve --config CONFIG ARGS...` with exactly the adpipe variables
    /// in `env`, and wait until it listens.
    pub fn spawn(config: &std::path::Path, env: &[(&str, &str)], args: &[&str]) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_adpipe"));
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

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
