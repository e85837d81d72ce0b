//! Fleet rollout through the plugin registry: two `adpipe serve` processes
//! on PostgreSQL, Redis, Kafka and ClickHouse take reports the whole time
//! while a canary is pinned to one pipeline, promoted, rolled back and a new
//! version deployed through one host; both converge within seconds and no
//! request fails. A component failing its checks changes nothing. With
//! trusted keys set (embedded mode, the SQLite registry), an unsigned or
//! wrongly signed component is refused and a signed one accepted.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use adpipe::app::App;
use adpipe::auth::Role;
use axum::http::StatusCode;
use serde_json::Value;

use crate::common::*;

/// The test adapter's two releases: 0.0.1 counts 100 impressions per
/// payload, 0.0.2 counts 200, so every total says which version parsed it.
const V1: (&str, i64) = ("0.0.1", 100);
const V2: (&str, i64) = ("0.0.2", 200);

fn host_config(
    dir: &tempfile::TempDir,
    name: &str,
    tag: &str,
    postgres: &str,
) -> std::path::PathBuf {
    let extra = r#"[plugin_registry]
reconcile_seconds = 30
[api.rate_limits]
ingest = { caller = { per_second = 10000, burst = 10000 }, tenant = { per_second = 10000, burst = 10000 } }
admin = { caller = { per_second = 1000, burst = 1000 }, tenant = { per_second = 1000, burst = 1000 } }
read = { caller = { per_second = 10000, burst = 10000 }, tenant = { per_second = 10000, burst = 10000 } }
"#;
    let plugins = format!(
        "[[plugins]]\nname = \"misbehaving\"\npath = \"{}\"\n\
         [[pipelines]]\nname = \"alpha\"\ntenant = \"demo\"\nadapter = \"misbehaving\"\n\
         [[pipelines]]\nname = \"beta\"\ntenant = \"demo\"\nadapter = \"misbehaving\"\n",
        plugin_path("misbehaving").display()
    );
    crate::distributed::serve_config_with(dir, name, tag, postgres, 2, extra, &plugins)
}

struct Fleet {
    client: reqwest::Client,
    hosts: Vec<String>,
    operator: String,
    ingest: String,
    viewer: String,
    probe: AtomicU64,
}

impl Fleet {
    async fn plugin(&self, host: &str) -> Value {
        let list: Value = self
            .client
            .get(format!("{host}/v1/plugins"))
            .bearer_auth(&self.operator)
            .send()
            .await
            .expect("plugins")
            .json()
            .await
            .expect("json");
        list["plugins"]
            .as_array()
            .and_then(|l| l.iter().find(|p| p["name"] == "misbehaving").cloned())
            .unwrap_or(Value::Null)
    }

    async fn post(&self, host: &str, pipeline: &str, body: String) -> u16 {
        self.client
            .post(format!("{host}/v1/pipelines/{pipeline}/reports"))
            .bearer_auth(&self.ingest)
            .body(body)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    }

    /// Impressions of a fresh campaign pushed through `pipeline` on `host`:
    /// which version parsed it.
    async fn parsed_by(&self, host: &str, pipeline: &str) -> i64 {
        let n = self.probe.fetch_add(1, Ordering::Relaxed);
        let campaign = format!("probe{n}");
        assert_eq!(
            self.post(host, pipeline, format!("fine:{campaign}")).await,
            202
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let answer: Value = self
                .client
                .get(format!(
                    "{host}/v1/insights?from=2026-11-01&to=2026-11-01&granularity=total&campaign_id={campaign}"
                ))
                .bearer_auth(&self.viewer)
                .send()
                .await
                .expect("insights")
                .json()
                .await
                .expect("json");
            if let Some(n) = answer["rows"][0]["impressions"].as_i64() {
                return n;
            }
            assert!(
                Instant::now() < deadline,
                "{campaign} never applied: {answer}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Wait until every host serves `version` fleet-wide (and `pins`), and
    /// the registry on each says so; how long it took.
    async fn converged(&self, version: &str, pins: &[(&str, &str)]) -> Duration {
        let start = Instant::now();
        loop {
            let mut done = true;
            for host in &self.hosts {
                let entry = self.plugin(host).await;
                let pinned = entry["pinned"].as_object().cloned().unwrap_or_default();
                let hosts_seen = entry["registry"]["hosts"]
                    .as_array()
                    .map_or(0, |h| h.iter().filter(|h| h["pipeline"].is_null()).count());
                done &= entry["version"] == version
                    && pinned.len() == pins.len()
                    && pins
                        .iter()
                        .all(|(p, v)| pinned.get(*p).is_some_and(|e| e["version"] == *v))
                    && entry["registry"]["converged"] == true
                    && hosts_seen == self.hosts.len();
            }
            if done {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "not converged on {version} {pins:?}: {} / {}",
                self.plugin(&self.hosts[0]).await,
                self.plugin(&self.hosts[1]).await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn call(&self, host: &str, path: &str, body: Vec<u8>) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{host}{path}"))
            .bearer_auth(&self.operator)
            .header("content-type", "application/wasm")
            .body(body)
            .send()
            .await
            .expect("call");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deployment_reaches_every_host_with_canary_promotion_and_rollback() {
    if !engines_available(&DISTRIBUTED_ENGINES) {
        return;
    }
    let database = crate::engines::TempDatabase::create().await;
    let tag = format!(
        "rollout_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [("ADPIPE_JWT_SECRET", JWT_SECRET)];
    let a = Server::spawn(&host_config(&dir, "a", &tag, &database.url), &env, &[]);
    let b = Server::spawn(&host_config(&dir, "b", &tag, &database.url), &env, &[]);
    let fleet = Arc::new(Fleet {
        client: reqwest::Client::new(),
        hosts: vec![a.base.clone(), b.base.clone()],
        operator: token("demo", &[Role::Operator], 600),
        ingest: token("demo", &[Role::Ingest], 600),
        viewer: token("demo", &[Role::Viewer], 600),
        probe: AtomicU64::new(0),
    });
    let (first, second) = (fleet.hosts[0].clone(), fleet.hosts[1].clone());

    // Reports stream into both hosts and both pipelines the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::<(String, u16)>::new()));
    let streamed = Arc::new(AtomicU64::new(0));
    let stream = {
        let (fleet, stop, failures, streamed) = (
            fleet.clone(),
            stop.clone(),
            failures.clone(),
            streamed.clone(),
        );
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let host = &fleet.hosts[(i % 2) as usize];
                let pipeline = if i % 4 < 2 { "alpha" } else { "beta" };
                let status = fleet.post(host, pipeline, format!("fine:stream{i}")).await;
                if status != 202 {
                    failures
                        .lock()
                        .expect("lock")
                        .push((format!("{host} {pipeline} #{i}"), status));
                }
                streamed.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        })
    };

    fleet.converged(V1.0, &[]).await;
    for host in [&first, &second] {
        assert_eq!(fleet.parsed_by(host, "alpha").await, V1.1);
    }
    let v1 = std::fs::read(plugin_path("misbehaving")).expect("v1");
    let v2 = std::fs::read(plugin_path("misbehaving-v2")).expect("v2");

    // A canary: 0.0.2 pinned to `beta`, deployed through host A.
    let (status, answer) = fleet
        .call(
            &first,
            "/v1/plugins/misbehaving/versions?pipeline=beta",
            v2.clone(),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["version"], V2.0);
    let took = fleet.converged(V1.0, &[("beta", V2.0)]).await;
    for host in [&first, &second] {
        assert_eq!(
            fleet.parsed_by(host, "beta").await,
            V2.1,
            "canary on {host}"
        );
        assert_eq!(
            fleet.parsed_by(host, "alpha").await,
            V1.1,
            "not the canary on {host}"
        );
    }
    eprintln!("canary converged in {took:?}");

    // Promoted through host B: every pipeline on every host.
    let (status, answer) = fleet
        .call(&second, "/v1/plugins/misbehaving/promote", vec![])
        .await;
    assert_eq!(status, 200, "{answer}");
    let took = fleet.converged(V2.0, &[]).await;
    assert!(took < Duration::from_secs(5), "promotion took {took:?}");
    eprintln!("promotion converged in {took:?}");
    for host in [&first, &second] {
        for pipeline in ["alpha", "beta"] {
            assert_eq!(fleet.parsed_by(host, pipeline).await, V2.1);
        }
    }

    // A component that fails the checks changes nothing.
    let (status, answer) = fleet
        .call(
            &first,
            "/v1/plugins/misbehaving/versions",
            b"\0asm junk".to_vec(),
        )
        .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (422, Some("component_refused")),
        "{answer}"
    );
    let (status, answer) = fleet
        .call(
            &first,
            "/v1/plugins/misbehaving/versions?pipeline=nope",
            v1.clone(),
        )
        .await;
    assert_eq!(status, 404, "{answer}");
    fleet.converged(V2.0, &[]).await;

    // Rolled back: both hosts return to the file's 0.0.1.
    let (status, answer) = fleet
        .call(&first, "/v1/plugins/misbehaving/rollback", vec![])
        .await;
    assert_eq!(status, 200, "{answer}");
    let took = fleet.converged(V1.0, &[]).await;
    assert!(took < Duration::from_secs(5), "rollback took {took:?}");
    eprintln!("rollback converged in {took:?}");
    assert_eq!(fleet.parsed_by(&second, "beta").await, V1.1);

    // Deployed fleet-wide at once, while the reports stream.
    let (status, answer) = fleet
        .call(&second, "/v1/plugins/misbehaving/versions", v2.clone())
        .await;
    assert_eq!(status, 201, "{answer}");
    let took = fleet.converged(V2.0, &[]).await;
    assert!(took < Duration::from_secs(5), "deployment took {took:?}");
    eprintln!("deployment converged in {took:?}");
    for host in [&first, &second] {
        assert_eq!(fleet.parsed_by(host, "alpha").await, V2.1);
    }
    let registry = fleet.plugin(&first).await["registry"].clone();
    assert_eq!(registry["desired"]["version"], V2.0, "{registry}");
    assert_eq!(registry["desired"]["updated_by"], "test", "{registry}");

    stop.store(true, Ordering::Relaxed);
    stream.await.expect("stream");
    let failures = failures.lock().expect("lock").clone();
    assert!(
        failures.is_empty(),
        "{} of {} streamed reports failed: {failures:?}",
        failures.len(),
        streamed.load(Ordering::Relaxed)
    );
    assert!(streamed.load(Ordering::Relaxed) > 20);
    eprintln!(
        "{} reports streamed, none failed",
        streamed.load(Ordering::Relaxed)
    );
    drop((a, b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_trusted_keys_only_signed_components_are_deployed() {
    let (private, public) = adpipe::plugin::signing::generate().expect("keygen");
    let (stranger, _) = adpipe::plugin::signing::generate().expect("keygen");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(
        &dir,
        vec![plugin("misbehaving")],
        vec![pipeline("alpha", "demo", "misbehaving")],
    );
    config.server.watch_plugins = false;
    config.plugin_registry.trusted_keys = vec![public.clone()];
    let app = App::start(config).await.expect("start");
    let v2 = std::fs::read(plugin_path("misbehaving-v2")).expect("v2");
    let operator = token("demo", &[Role::Operator], 60);
    let deploy = |signature: Option<String>| {
        let mut request = axum::http::Request::builder()
            .method("POST")
            .uri("/v1/plugins/misbehaving/versions")
            .header("authorization", format!("Bearer {operator}"))
            .header("content-type", "application/wasm");
        if let Some(signature) = signature {
            request = request.header("adpipe-signature", signature);
        }
        request
            .body(axum::body::Body::from(v2.clone()))
            .expect("request")
    };
    for (signature, why) in [
        (None, "unsigned"),
        (
            Some(
                adpipe::plugin::signing::sign(&stranger, &v2)
                    .expect("sign")
                    .0,
            ),
            "signed by a stranger",
        ),
        (
            Some(
                adpipe::plugin::signing::sign(&private, b"other bytes")
                    .expect("sign")
                    .0,
            ),
            "a signature of other bytes",
        ),
    ] {
        let answer = send(&app, deploy(signature)).await;
        assert_eq!(
            (answer.status, answer.code()),
            (StatusCode::UNPROCESSABLE_ENTITY, "signature_required"),
            "{why}: {}",
            answer.text
        );
    }
    let list = send(&app, get("/v1/plugins", Some(&operator))).await;
    assert_eq!(list.json["plugins"][0]["version"], V1.0, "{}", list.text);
    let (signature, _) = adpipe::plugin::signing::sign(&private, &v2).expect("sign");
    let answer = send(&app, deploy(Some(signature))).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    assert_eq!(answer.json["signed_by"], public.as_str());
    let list = send(&app, get("/v1/plugins", Some(&operator))).await;
    assert_eq!(list.json["plugins"][0]["version"], V2.0, "{}", list.text);
    assert_eq!(
        list.json["plugins"][0]["registry"]["converged"], true,
        "{}",
        list.text
    );
    // The audit log says who deployed what: the content hash, not only the route.
    let admin = token("demo", &[Role::Admin], 60);
    let audit = send(&app, get("/v1/audit", Some(&admin))).await;
    let hash = answer.json["content_hash"]
        .as_str()
        .unwrap_or("?")
        .to_owned();
    let entries = audit.json["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let deployed: Vec<&Value> = entries
        .iter()
        .filter(|e| e["action"] == "POST /v1/plugins/{name}/versions")
        .collect();
    assert_eq!(deployed.len(), 4, "{}", audit.text);
    assert!(
        deployed.iter().any(|e| e["status"] == 201
            && e["actor"] == "test"
            && e["target"]
                .as_str()
                .is_some_and(|t| t.contains(&format!("version=0.0.2 content_hash={hash}")))),
        "{}",
        audit.text
    );
}

/// The operator's commands against a running server (embedded mode):
/// `plugin keygen`, `plugin deploy` refused unsigned, `plugin sign`, then
/// accepted, `plugin list`, `plugin rollback` to the file's version.
#[test]
fn the_cli_signs_deploys_lists_and_rolls_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let adpipe = |args: &[String]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_adpipe"))
            .args(args)
            .current_dir(dir.path())
            .env("ADPIPE_LOG", "warn")
            .output()
            .expect("run adpipe");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned()
                + &String::from_utf8_lossy(&output.stderr),
        )
    };
    let owned = |args: &[&str]| -> Vec<String> { args.iter().map(|a| (*a).to_owned()).collect() };
    let (ok, said) = adpipe(&owned(&["plugin", "keygen", "--out", "signing.key"]));
    assert!(ok, "{said}");
    let public = said
        .lines()
        .find_map(|l| l.split("trusted_keys: ").nth(1))
        .expect("public key printed")
        .trim()
        .to_owned();
    let config = dir.path().join("adpipe.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nwatch_plugins = false\n\n\
             [plugin_registry]\ntrusted_keys = [\"{public}\"]\n\n\
             [[plugins]]\nname = \"misbehaving\"\npath = \"{}\"\n\n\
             [[pipelines]]\nname = \"alpha\"\ntenant = \"demo\"\nadapter = \"misbehaving\"\n",
            dir.path().join("data").display(),
            plugin_path("misbehaving").display()
        ),
    )
    .expect("config");
    let server = Server::spawn(&config, &[("ADPIPE_JWT_SECRET", JWT_SECRET)], &[]);
    let operator = token("demo", &[Role::Operator], 600);
    let remote = ["--url", server.base.as_str(), "--token", operator.as_str()];
    std::fs::copy(plugin_path("misbehaving-v2"), dir.path().join("v2.wasm")).expect("copy");
    let with = |args: &[&'static str]| -> Vec<String> {
        args.iter()
            .map(|a| (*a).to_owned())
            .chain(remote.iter().map(|a| (*a).to_owned()))
            .collect()
    };

    let (ok, said) = adpipe(&with(&["plugin", "deploy", "misbehaving", "v2.wasm"]));
    assert!(!ok && said.contains("signature_required"), "{said}");
    let (ok, said) = adpipe(&owned(&[
        "plugin",
        "sign",
        "v2.wasm",
        "--key",
        "signing.key",
    ]));
    assert!(ok && dir.path().join("v2.wasm.sig").is_file(), "{said}");
    let (ok, said) = adpipe(&with(&["plugin", "deploy", "misbehaving", "v2.wasm"]));
    assert!(ok && said.contains("\"version\": \"0.0.2\""), "{said}");
    assert!(said.contains(&public), "signed_by: {said}");
    let (ok, said) = adpipe(&with(&["plugin", "list"]));
    assert!(ok && said.contains("\"version\": \"0.0.2\""), "{said}");
    let (ok, said) = adpipe(&with(&["plugin", "rollback", "misbehaving"]));
    assert!(ok, "{said}");
    let (ok, said) = adpipe(&with(&["plugin", "list"]));
    assert!(ok && said.contains("\"version\": \"0.0.1\""), "{said}");
    let (ok, said) = adpipe(&with(&["plugin", "rollback", "nope"]));
    assert!(!ok && said.contains("unknown_plugin"), "{said}");
}
