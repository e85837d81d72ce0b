#!/usr/bin/env python3
"""docs/operations.md's embedded backup and restore, done on a real `adpipe serve`.

Serve on data directory A, push reports, read the insights totals; stop the process with
SIGTERM, copy the directory without `plugin-cache/` (the procedure "stop, copy, start"),
start a new process on the copy and check: the same totals, the API key and the JWT
minted before the backup still authenticate, the kept payloads (sealed at rest with the
generated `encryption-key`, which the backup carries) still replay, and ingestion goes on
(a new page changes the totals). Standard library only; readiness is polled.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from prometheus_e2e import Failure, free_port, http, wait_for  # noqa: E402

INSIGHTS = "/v1/insights?from=2026-11-01&to=2026-11-07&granularity=total&group_by=platform"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--repo", default=str(Path(__file__).resolve().parents[2]))
    args = ap.parse_args()
    repo, bin_ = Path(args.repo), str(Path(args.bin).resolve())
    config = str(repo / "pipelines.toml")
    tmp = Path(tempfile.mkdtemp(prefix="adpipe-backup-"))
    procs: list[subprocess.Popen] = []
    passed, failed = 0, []

    def check(ok: bool, what: str) -> None:
        nonlocal passed
        if ok:
            passed += 1
        else:
            failed.append(what)

    def cli(*a: str) -> str:
        return subprocess.run([bin_, *a], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()

    def serve(data: Path, name: str):
        port = free_port()
        log = open(tmp / f"{name}.log", "wb")
        p = subprocess.Popen([bin_, "serve", "--config", config, "--data-dir", str(data),
                              "--listen", f"127.0.0.1:{port}"], cwd=repo, stdout=log, stderr=subprocess.STDOUT)
        procs.append(p)
        api = f"http://127.0.0.1:{port}"
        wait_for(f"{name} /readyz", lambda: http("GET", f"{api}/readyz", timeout=2)[0] == 200, proc=p)
        return p, api

    def totals(api: str, token: str) -> dict:
        status, body = http("GET", api + INSIGHTS, token)
        if status != 200:
            raise Failure(f"insights: {status} {body[:200]!r}")
        rows = json.loads(body)["rows"]
        return {(r["platform"], r["currency"]): (r["impressions"], round(r["spend"], 6)) for r in rows}

    def push(api: str, token: str, pipeline: str, fixture: str) -> None:
        status, body = http("POST", f"{api}/v1/pipelines/{pipeline}/reports", token,
                            (repo / "plugins" / "adapters" / fixture).read_bytes())
        if status != 202:
            raise Failure(f"report to {pipeline}: {status} {body[:200]!r}")

    try:
        a = tmp / "a"
        key = cli("keys", "create", "--tenant", "demo", "--role", "viewer", "--name", "backup-test",
                  "--config", config, "--data-dir", str(a)).split()[-1]
        token = cli("token", "--tenant", "demo", "--role", "admin", "--ttl", "1h",
                    "--config", config, "--data-dir", str(a))
        proc_a, api_a = serve(a, "a")
        push(api_a, token, "meta", "meta/tests/fixtures/insights_ad_page1.json")
        push(api_a, token, "google", "google/tests/fixtures/searchstream_ad_group_ad.json")
        # Rows are applied by the consumer after the 202: wait until both platforms show.
        before = wait_for("both platforms in the insights", lambda: (t := totals(api_a, token))
                          and {p for p, _ in t} == {"meta", "google"} and t)

        proc_a.send_signal(signal.SIGTERM)
        check(proc_a.wait(timeout=30) == 0, f"adpipe exits 0 on SIGTERM (got {proc_a.returncode})")
        files = sorted(p.name for p in a.iterdir())
        for f in ("bus.db", "store.db", "metadata.db", "jwt-secret", "encryption-key", "plugin-cache"):
            check(f in files, f"the data directory holds {f} (has {files})")
        b = tmp / "b"
        shutil.copytree(a, b, ignore=shutil.ignore_patterns("plugin-cache"))
        shutil.rmtree(a)  # the original is gone: only the backup remains

        _, api_b = serve(b, "b")
        check(totals(api_b, token) == before, "the restored server answers the same totals")
        status, _ = http("GET", f"{api_b}/v1/whoami", key)
        check(status == 200, f"an API key made before the backup authenticates after the restore ({status})")
        status, _ = http("GET", f"{api_b}/v1/whoami", token)
        check(status == 200, f"a JWT minted before the backup is valid after the restore ({status})")
        today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
        status, body = http("POST", f"{api_b}/v1/replay", token,
                            json.dumps({"pipeline": "meta", "from": today, "to": today}).encode())
        replayed = json.loads(body) if status == 200 else {}
        check(status == 200 and replayed.get("payloads") == 1 and replayed.get("failed") == 0,
              f"the sealed kept payload replays after the restore ({status} {body[:200]!r})")
        push(api_b, token, "meta", "meta/tests/fixtures/insights_ad_page2.json")
        after = wait_for("page 2 in the totals", lambda: (t := totals(api_b, token)) != before and t)
        check(after[next(k for k in after if k[0] == "google")] == before[next(k for k in before if k[0] == "google")],
              "ingestion goes on after the restore (meta changed, google unchanged)")
    except Failure as e:
        failed.append(str(e))
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        if not failed:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"(files kept in {tmp})", file=sys.stderr)
    for f in failed:
        print(f"  FAILED {f}")
    print(f"backup-restore: {passed} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
