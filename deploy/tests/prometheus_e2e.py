#!/usr/bin/env python3
"""Debian's real Prometheus scrapes a real `adpipe serve`; the rules and the Grafana
dashboard are checked against what it stored.

1. `adpipe keys create` makes the scrape credential (an API key, read by Prometheus from
   a file: deploy/prometheus/prometheus.yml's `credentials_file`).
2. `adpipe serve` starts on a free port with the repository's pipelines.toml (read rate
   limits lowered through ADPIPE_API__RATE_LIMITS__* so a small workload meets them).
3. Prometheus starts with deploy/prometheus/prometheus.yml (target, credential path and
   intervals rewritten for the test) and deploy/prometheus/adpipe-rules.yml.
4. Two rounds of workload, each followed by a scrape: reports of the four platforms, a
   payload the adapter rejects (dead letter), insights queries (cache miss then hits),
   a plugin hot reload, and a burst that meets the read rate limit.
5. Through Prometheus' HTTP API: every rule has been evaluated with health "ok" and its
   expression parses; every Grafana panel query (Grafana variables substituted) parses
   and returns at least one finite value; every metric name used exists in adpipe's
   exposition, except the ones listed in PENDING_METRICS.

Standard library only. Readiness is polled; there is no fixed sleep.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

# Metric names the rules use that adpipe does not export yet (the rule stays silent).
PENDING_METRICS = {"adpipe_pull_runs_total"}

# Grafana variables, replaced the way Grafana would for a 10-minute view.
GRAFANA_VARS = {
    "$__rate_interval": "5m",
    "$__range": "10m",
    "$instance": ".*",
}

DEADLINE_S = 60.0


class Failure(Exception):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, token: str | None = None, body: bytes | None = None,
         timeout: float = 10.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_for(what: str, check, deadline_s: float = DEADLINE_S, proc: subprocess.Popen | None = None):
    """Poll `check()` until it returns something truthy; fail after `deadline_s`."""
    end = time.monotonic() + deadline_s
    delay = 0.05
    last_error = None
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise Failure(f"{what}: the process exited with {proc.returncode}")
        try:
            value = check()
            if value:
                return value
        except (OSError, urllib.error.URLError, ValueError, KeyError) as e:
            last_error = e
        time.sleep(delay)
        delay = min(delay * 2, 0.5)
    raise Failure(f"timed out waiting for {what} (last error: {last_error})")


class Prom:
    def __init__(self, base: str):
        self.base = base

    def get(self, path: str, **params) -> dict:
        url = f"{self.base}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params, doseq=True)
        status, body = http("GET", url)
        answer = json.loads(body)
        if status != 200 or answer.get("status") != "success":
            raise Failure(f"{path} {params}: HTTP {status}: {answer.get('error', body[:300])}")
        return answer["data"]

    def query(self, expr: str) -> dict:
        return self.get("/api/v1/query", query=expr)

    def last_scrape(self) -> float:
        # timestamp() of a bare selector is the scrape's own time (an operator in
        # between would make it the evaluation time).
        result = self.query('timestamp(up{job="adpipe"})')["result"]
        up = self.query('up{job="adpipe"}')["result"]
        if not (result and up and up[0]["value"][1] == "1"):
            return 0.0
        return float(result[0]["value"][1])

    def wait_scrape_after(self, t: float, what: str) -> None:
        wait_for(f"a scrape after {what}", lambda: self.last_scrape() > t + 0.001)


def finite_values(result: dict) -> list[float]:
    kind, items = result["resultType"], result["result"]
    if kind == "scalar":
        items = [{"value": items}]
    values = []
    for item in items:
        v = float(item["value"][1])
        if math.isfinite(v):
            values.append(v)
    return values


def grafana_expr(expr: str) -> str:
    # Longest variable names first ($__rate_interval before $__range).
    for name in sorted(GRAFANA_VARS, key=len, reverse=True):
        expr = expr.replace(name, GRAFANA_VARS[name])
    if "$" in expr:
        raise Failure(f"unsubstituted Grafana variable in {expr!r}")
    return expr


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(adpipe_[a-z_]+)\b", expr))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", required=True, help="the adpipe binary")
    ap.add_argument("--repo", default=str(Path(__file__).resolve().parents[2]))
    ap.add_argument("--prometheus", default=shutil.which("prometheus") or "/usr/bin/prometheus")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    repo = Path(args.repo)
    tmp = Path(tempfile.mkdtemp(prefix="adpipe-prom-e2e-"))
    procs: list[subprocess.Popen] = []
    ok = False
    try:
        run(repo, Path(args.bin).resolve(), args.prometheus, tmp, procs)
        ok = True
        return 0
    except Failure as e:
        print(f"FAIL: {e}", file=sys.stderr)
        for name in ("adpipe.log", "prometheus.log"):
            p = tmp / name
            if p.exists():
                print(f"--- last lines of {p}", file=sys.stderr)
                print("\n".join(p.read_text(errors="replace").splitlines()[-25:]), file=sys.stderr)
        return 1
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if ok and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"(files kept in {tmp})", file=sys.stderr)


def run(repo: Path, bin_: Path, prometheus: str, tmp: Path, procs: list) -> None:
    config = repo / "pipelines.toml"
    data = tmp / "data"
    data.mkdir()
    base_cmd = [str(bin_)]

    def cli(*a: str) -> str:
        out = subprocess.run(base_cmd + list(a), cwd=repo, check=True, capture_output=True, text=True)
        return out.stdout.strip()

    # The scrape credential: an API key of the `operator` role (docs/contracts.md §4: /metrics is the
    # operator's, never implied by admin). Keys of both roles are made and the one /metrics
    # accepts is used; the test below insists it is the operator's.
    keys = {}
    for role in ("operator", "admin"):
        made = subprocess.run(base_cmd + ["keys", "create", "--tenant", "ops", "--role", role,
                                          "--name", f"prometheus-{role}", "--config", str(config),
                                          "--data-dir", str(data)], cwd=repo, capture_output=True, text=True)
        if made.returncode == 0 and made.stdout.split() and made.stdout.split()[-1].startswith("adp_"):
            keys[role] = made.stdout.split()[-1]
    if not keys:
        raise Failure("`adpipe keys create` made no key for role operator or admin")

    def token(role: str, sub: str) -> str:
        return cli("token", "--tenant", "demo", "--role", role, "--sub", sub, "--ttl", "1h",
                   "--config", str(config), "--data-dir", str(data))

    operator = token("operator", "e2e-operator")
    ingest, admin, viewer, probe = (token("ingest", "e2e-ingest"), token("admin", "e2e-admin"),
                                    token("viewer", "e2e-viewer"), token("viewer", "e2e-probe"))

    port = free_port()
    api = f"http://127.0.0.1:{port}"
    env = dict(os.environ)
    env.update({
        "ADPIPE_API__RATE_LIMITS__READ__CALLER__PER_SECOND": "1",
        "ADPIPE_API__RATE_LIMITS__READ__CALLER__BURST": "10",
        "RUST_LOG": env.get("RUST_LOG", "warn"),
    })
    log = open(tmp / "adpipe.log", "wb")
    server = subprocess.Popen(base_cmd + ["serve", "--config", str(config), "--data-dir", str(data),
                                          "--listen", f"127.0.0.1:{port}"],
                              cwd=repo, env=env, stdout=log, stderr=subprocess.STDOUT)
    procs.append(server)
    wait_for("adpipe /readyz", lambda: http("GET", f"{api}/readyz", timeout=2)[0] == 200, proc=server)
    # The Dockerfile's HEALTHCHECK, as the container runtime would run it, against this server.
    health = dockerfile_healthcheck(repo / "Dockerfile")
    if subprocess.run([c.replace("127.0.0.1/8080", f"127.0.0.1/{port}") for c in health]).returncode != 0:
        raise Failure(f"the Dockerfile's HEALTHCHECK fails against a healthy adpipe: {health}")
    closed = free_port()
    if subprocess.run([c.replace("127.0.0.1/8080", f"127.0.0.1/{closed}") for c in health],
                      stderr=subprocess.DEVNULL).returncode == 0:
        raise Failure("the Dockerfile's HEALTHCHECK passes with nothing listening")
    answers = {role: http("GET", f"{api}/metrics", token=k)[0] for role, k in keys.items()}
    scrape_role = next((role for role, status in answers.items() if status == 200), None)
    if answers != {"operator": 200, "admin": 403}:
        raise Failure(f"GET /metrics must take the operator's key and refuse an admin's: {answers}")
    key_file = tmp / "adpipe-scrape-key"
    key_file.write_text(keys[scrape_role] + "\n")
    key_file.chmod(0o600)

    # Prometheus, from the shipped config and rules.
    prom_port = free_port()
    rules_src = (repo / "deploy/prometheus/adpipe-rules.yml").read_text()
    rules = tmp / "adpipe-rules.yml"
    rules.write_text(rules_src.replace("interval: 30s", "interval: 1s"))
    prom_cfg = (repo / "deploy/prometheus/prometheus.yml").read_text()
    for old, new in [("/etc/prometheus/secrets/adpipe-scrape-key", str(key_file)),
                     ('"127.0.0.1:8080"', f'"127.0.0.1:{port}"'),
                     ("scrape_interval: 15s", "scrape_interval: 1s"),
                     ("evaluation_interval: 30s", "evaluation_interval: 1s"),
                     ("- adpipe-rules.yml", f"- {rules}")]:
        if old not in prom_cfg:
            raise Failure(f"deploy/prometheus/prometheus.yml no longer contains {old!r}")
        prom_cfg = prom_cfg.replace(old, new)
    (tmp / "prometheus.yml").write_text(prom_cfg)
    plog = open(tmp / "prometheus.log", "wb")
    prom_proc = subprocess.Popen([prometheus, f"--config.file={tmp / 'prometheus.yml'}",
                                  f"--storage.tsdb.path={tmp / 'tsdb'}",
                                  f"--web.listen-address=127.0.0.1:{prom_port}",
                                  "--storage.tsdb.retention.time=1h"],
                                 stdout=plog, stderr=subprocess.STDOUT)
    procs.append(prom_proc)
    prom = Prom(f"http://127.0.0.1:{prom_port}")
    wait_for("Prometheus /-/ready", lambda: http("GET", f"{prom.base}/-/ready", timeout=2)[0] == 200,
             proc=prom_proc)

    def target_up():
        targets = prom.get("/api/v1/targets")["activeTargets"]
        t = [t for t in targets if t["labels"].get("job") == "adpipe"]
        if t and t[0]["health"] == "down":
            raise ValueError(f"target down: {t[0].get('lastError')}")
        return t and t[0]["health"] == "up"

    wait_for("the adpipe target to be up", target_up, proc=prom_proc)

    fx = repo / "plugins" / "adapters"
    reports = [
        ("meta", "", fx / "meta/tests/fixtures/insights_ad_page1.json"),
        ("meta", "", fx / "meta/tests/fixtures/insights_ad_page2.json"),
        ("google", "", fx / "google/tests/fixtures/searchstream_ad_group_ad.json"),
        ("linkedin", "?account_id=509876&currency=USD", fx / "linkedin/tests/fixtures/adanalytics_statistics_page1.json"),
        ("tiktok", "?account_id=7012345678901234567", fx / "tiktok/tests/fixtures/report_ad_page1.json"),
    ]
    counts = {"accepted_rows": 0, "dead_letters": 0, "insights": 0, "refused_429": 0, "reloads": 0}

    def workload(round_: int) -> None:
        for pipeline, query, path in reports:
            status, body = http("POST", f"{api}/v1/pipelines/{pipeline}/reports{query}", ingest, path.read_bytes())
            if status != 202:
                raise Failure(f"report to {pipeline}: {status} {body[:300]!r}")
            counts["accepted_rows"] += json.loads(body)["accepted"]
        # A Meta error body: the adapter rejects it, the payload becomes a dead letter.
        status, body = http("POST", f"{api}/v1/pipelines/meta/reports", ingest,
                            (fx / "meta/tests/fixtures/insights_error.json").read_bytes())
        if status // 100 != 4:
            raise Failure(f"a Meta error body was answered {status}, not 4xx: {body[:300]!r}")
        counts["dead_letters"] += 1
        for _ in range(3):  # a miss, then hits (the data version changed since the last round)
            status, body = http("GET", f"{api}/v1/insights?from=2026-11-01&to=2026-11-07&granularity=day"
                                f"&group_by=campaign_id", viewer)
            if status != 200:
                raise Failure(f"insights: {status} {body[:300]!r}")
            counts["insights"] += 1
        status, body = http("POST", f"{api}/v1/plugins/meta/reload", operator, b"")
        if status != 200:
            raise Failure(f"reload of meta: {status} {body[:300]!r}")
        counts["reloads"] += 1
        refused = 0
        for _ in range(15):  # a caller's read budget is 10 at once, then 1/s
            status, _ = http("GET", f"{api}/v1/campaigns", probe)
            refused += status == 429
        if refused == 0:
            raise Failure(f"round {round_}: 15 quick reads met no rate limit (ADPIPE_API__RATE_LIMITS__READ__* not applied?)")
        counts["refused_429"] += refused

    for round_ in (1, 2):
        workload(round_)
        prom.wait_scrape_after(time.time(), f"workload round {round_}")

    passed = failed = 0
    problems: list[str] = []

    # Rules: loaded, evaluated after the workload, healthy, and each expression parses.
    groups = prom.get("/api/v1/rules")["groups"]
    if {g["name"] for g in groups} != {"adpipe.recording", "adpipe.alerts"}:
        raise Failure(f"unexpected rule groups: {[g['name'] for g in groups]}")
    after = time.time()

    def evaluated_since():
        gs = prom.get("/api/v1/rules")["groups"]
        ts = [r.get("lastEvaluation", "") for g in gs for r in g["rules"]]
        return gs if all(t and not t.startswith("0001") for t in ts) and \
            all(prom_time(g["lastEvaluation"]) > after for g in gs) else None

    groups = wait_for("every rule to be evaluated after the workload", evaluated_since)
    used_names: set[str] = set()
    rule_stats = {"recording": 0, "alerting": 0, "with_data": 0}
    without_data: list[str] = []
    for g in groups:
        for r in g["rules"]:
            name = r["name"]
            used_names |= metric_names(r["query"])
            rule_stats[r["type"]] += 1
            if r["health"] != "ok":
                failed += 1
                problems.append(f"rule {name}: health {r['health']}: {r.get('lastError')}")
                continue
            try:
                prom.query(r["query"])
                passed += 1
            except Failure as e:
                failed += 1
                problems.append(f"rule {name}: {e}")
            if r["type"] == "recording":
                # Every recording rule has data after the workload (dashboards may use them).
                if finite_values(prom.query(name)):
                    rule_stats["with_data"] += 1
                    passed += 1
                else:
                    without_data.append(name)
                    failed += 1
                    problems.append(f"recording rule {name}: no data after the workload")
    active = sorted({f'{a["labels"]["alertname"]} ({a["state"]})' for a in prom.get("/api/v1/alerts")["alerts"]})

    # Dashboard: every panel target parses and returns finite data.
    dash = json.loads((repo / "deploy/grafana/adpipe.json").read_text())
    panel_count = target_count = 0
    layout = dashboard_layout_problems(dash)
    if layout:
        failed += 1
        problems.extend(layout)
    else:
        passed += 1
    for p in dash["panels"]:
        if p["type"] == "row":
            continue
        panel_count += 1
        for t in p["targets"]:
            target_count += 1
            expr = grafana_expr(t["expr"])
            used_names |= metric_names(expr)
            try:
                values = finite_values(prom.query(expr))
            except Failure as e:
                failed += 1
                problems.append(f"panel {p['title']!r} {t['refId']}: {e}")
                continue
            if values:
                passed += 1
            else:
                failed += 1
                samples = {n: [len(r["values"]) for r in prom.query(f"{n}[5m]")["result"]]
                           for n in sorted(metric_names(expr))}
                problems.append(f"panel {p['title']!r} {t['refId']}: no data: {expr} "
                                f"(samples per series in the last 5m: {samples})")
    for var in dash["templating"]["list"]:
        if var["type"] != "query":
            continue
        m = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", var["query"]["query"])
        if not m:
            raise Failure(f"variable {var['name']}: unsupported query {var['query']}")
        values = prom.get(f"/api/v1/label/{m.group(2)}/values", **{"match[]": m.group(1)})
        if values:
            passed += 1
        else:
            failed += 1
            problems.append(f"variable {var['name']}: no values")

    # Every metric name used is exported by adpipe (or known to be pending).
    exported = set(prom.get("/api/v1/label/__name__/values"))
    missing = sorted(used_names - exported - PENDING_METRICS)
    if missing:
        failed += 1
        problems.append(f"metric names used but not exported by adpipe: {missing}")
    else:
        passed += 1
    now_exported = sorted(PENDING_METRICS & exported)

    print(f"scrape credential: an API key of role {scrape_role} (GET /metrics answered {answers})")
    print(f"workload: {counts['accepted_rows']} rows accepted in 10 reports, {counts['dead_letters']} dead "
          f"letters, {counts['insights']} insights queries, {counts['reloads']} reloads, "
          f"{counts['refused_429']} requests refused 429")
    print(f"rules: {rule_stats['recording']} recording ({rule_stats['with_data']} with data after the workload; "
          f"empty: {without_data or 'none'}), {rule_stats['alerting']} alerting; every rule evaluated by "
          f"Prometheus with health ok; active alerts: {active or 'none'}")
    print(f"dashboard: {panel_count} panels, {target_count} queries checked for data")
    print(f"metric names used: {len(used_names)}; pending (not exported yet): "
          f"{sorted(PENDING_METRICS - exported)}")
    if now_exported:
        print(f"note: {now_exported} is exported now: drop it from PENDING_METRICS")
    for p in problems:
        print(f"  FAILED {p}")
    print(f"prometheus-e2e: {passed} passed, {failed} failed")
    if failed:
        raise Failure(f"{failed} checks failed")


def dashboard_layout_problems(dash: dict) -> list[str]:
    """Unique ids, panels inside the 24-column grid and not overlapping, every query panel
    on the `datasource` variable."""
    problems, cells = [], {}
    ids = [p["id"] for p in dash["panels"]]
    if len(ids) != len(set(ids)):
        problems.append(f"dashboard: duplicate panel ids {ids}")
    for p in dash["panels"]:
        g = p["gridPos"]
        if g["x"] + g["w"] > 24:
            problems.append(f"panel {p['title']!r} leaves the 24-column grid")
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                if (x, y) in cells:
                    problems.append(f"panel {p['title']!r} overlaps {cells[(x, y)]!r}")
                cells[(x, y)] = p["title"]
        if p["type"] != "row" and p.get("datasource", {}).get("uid") != "${datasource}":
            problems.append(f"panel {p['title']!r} does not use the datasource variable")
    return sorted(set(problems))


def dockerfile_healthcheck(dockerfile: Path) -> list[str]:
    text = dockerfile.read_text().replace("\\\n", " ")
    m = re.search(r"^HEALTHCHECK .*?CMD (\[.*\])\s*$", text, re.M)
    if not m:
        raise Failure("Dockerfile: no HEALTHCHECK ... CMD [...] line")
    cmd = json.loads(m.group(1))
    if "127.0.0.1/8080" not in " ".join(cmd):
        raise Failure(f"Dockerfile HEALTHCHECK no longer probes 127.0.0.1/8080: {cmd}")
    return cmd


def prom_time(s: str) -> float:
    # RFC 3339 with up to nanoseconds: keep microseconds for datetime.
    m = re.fullmatch(r"(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", s)
    if not m:
        raise ValueError(f"unexpected time {s!r}")
    from datetime import datetime
    frac = (m.group(2) or "0")[:6].ljust(6, "0")
    tz = "+00:00" if m.group(3) == "Z" else m.group(3)
    return datetime.fromisoformat(f"{m.group(1)}.{frac}{tz}").timestamp()


if __name__ == "__main__":
    sys.exit(main())
