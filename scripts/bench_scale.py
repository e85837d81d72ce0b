#!/usr/bin/env python3
"""The scale benchmark of issue 12, run by `scripts/bench-scale` (which makes the venv
holding DuckDB and passes the binary); see that script for the usage.

One run, side by side:
  1. generates Meta Insights report pages (level=ad, time_increment=1, the field set of
     plugins/adapters/meta/tests/fixtures: `fields=account_id,account_currency,campaign_id,
     campaign_name,adset_id,ad_id,date_start,date_stop,impressions,clicks,spend,actions,
     action_values`): campaigns x ads x 100 days, pages of 5,000 rows, seeded values,
     streamed to files (in parallel, one process per core);
  2. DuckDB (in memory) times `read_json` of those files (`data` unnested into a table),
     then runs every query in SQL;
  3. a fresh `adpipe serve` (embedded: its own data dir; --distributed: Kafka + ClickHouse
     + PostgreSQL + Redis, with a fresh topic, consumer group, ClickHouse database and
     PostgreSQL database) with the answer cache off takes every page through
     POST /v1/pipelines/meta/reports; "ingest until applied" runs from the first push to
     the first /v1/insights answer whose account totals equal the generated ones;
  4. the same queries through /v1/insights (every page of the answer, following
     next_cursor), the median of --runs runs each, the server's peak RSS during them;
  5. every answer compared with DuckDB's (impressions, clicks, conversions exactly; spend
     and conversion value to the cent); a difference fails the run (exit 1). Missed
     targets are reported, not failures.
"""

import argparse
import concurrent.futures
import datetime
import http.client
import json
import multiprocessing
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIRST_DAY = datetime.date(2026, 8, 1)
DAYS = 100
ACCOUNT = "1234567890"
CURRENCY = "USD"
TENANT = "demo"
PIPELINE = "meta"
FORMAT = 1  # bump when the generated pages change, so --keep DIR regenerates them

# Targets of issue 12 ("Goals").
TARGET_ACCOUNT_RATIO = 3.0
TARGET_CAMPAIGN_RATIO = 2.0
TARGET_INGEST_EMBEDDED = 120_000
TARGET_INGEST_DISTRIBUTED = 100_000
TARGET_INGEST_VS_READ_JSON = 4.0
TARGET_DATA_DIR_RATIO = 1.5
TARGET_RSS_MB = 300
TARGET_GROWTH = 1.5


def log(msg):
    print(f"[bench-scale {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    """The benchmark could not run (exit 2); differing answers are exit 1."""


def fail(msg):
    raise BenchError(msg)


# ------------------------------------------------------------------ workload


def campaign_id(c):
    return f"120210{c:09d}"


def adset_id(c, a):
    return f"2385{c:06d}{a // 5:04d}"  # five ads per ad set


def ad_id(c, a):
    return f"2386{c:06d}{a:04d}"


def day_iso(d):
    return (FIRST_DAY + datetime.timedelta(days=d)).isoformat()


def cents(n):
    return f"{n // 100}.{n % 100:02d}"


def write_page(job):
    """Write page `page` to `path`; return its sums. Runs in a worker process."""
    path, page, page_rows, campaigns, ads, pages, seed = job
    per_day = campaigns * ads
    first = page * page_rows
    last = min(first + page_rows, per_day * DAYS)
    rng = random.Random(seed * 1_000_003 + page)
    rnd = rng.random
    impressions_sum = clicks_sum = spend_sum = conv_sum = value_sum = 0
    names = {}
    parts = []
    for i in range(first, last):
        d, rem = divmod(i, per_day)
        c, a = divmod(rem, ads)
        day = names.get(d) or names.setdefault(d, day_iso(d))
        impressions = 100 + int(rnd() * 20_000)
        clicks = int(impressions * rnd() * 0.04)
        spend = int(impressions * (0.2 + rnd() * 1.8))  # cents: CPM 2 to 20
        purchases = int(clicks * rnd() * 0.08)
        value = purchases * (1_000 + int(rnd() * 9_000))  # cents
        impressions_sum += impressions
        clicks_sum += clicks
        spend_sum += spend
        conv_sum += purchases
        value_sum += value
        cid = campaign_id(c)
        row = (
            f'{{"account_id":"{ACCOUNT}","account_currency":"{CURRENCY}","campaign_id":"{cid}",'
            f'"campaign_name":"Campaign {c:04d}","adset_id":"{adset_id(c, a)}","ad_id":"{ad_id(c, a)}",'
            f'"impressions":"{impressions}","clicks":"{clicks}","spend":"{cents(spend)}"'
        )
        # Meta leaves out `actions` / `action_values` when nothing happened, and lists
        # the pixel's purchases beside `purchase` (the adapter counts them once).
        if clicks:
            actions = [f'{{"action_type":"link_click","value":"{clicks - clicks // 10}"}}']
            if purchases:
                actions.append(f'{{"action_type":"offsite_conversion.fb_pixel_purchase","value":"{purchases}"}}')
                actions.append(f'{{"action_type":"purchase","value":"{purchases}"}}')
            row += ',"actions":[' + ",".join(actions) + "]"
            if purchases:
                v = cents(value)
                row += (
                    f',"action_values":[{{"action_type":"offsite_conversion.fb_pixel_purchase","value":"{v}"}},'
                    f'{{"action_type":"purchase","value":"{v}"}}]'
                )
        row += f',"date_start":"{day}","date_stop":"{day}"}}'
        parts.append(row)
    before = f"{first:010d}".encode().hex()[:12].upper()
    after = f"{last:010d}".encode().hex()[:12].upper()
    paging = f'{{"cursors":{{"before":"{before}","after":"{after}"}}'
    if page + 1 < pages:
        paging += (
            f',"next":"https://graph.facebook.com/v27.0/act_{ACCOUNT}/insights?access_token=BENCH'
            "&fields=account_id%2Caccount_currency%2Ccampaign_id%2Ccampaign_name%2Cadset_id%2Cad_id"
            "%2Cdate_start%2Cdate_stop%2Cimpressions%2Cclicks%2Cspend%2Cactions%2Caction_values"
            f"&level=ad&time_increment=1&limit={page_rows}&after={after}\""
        )
    paging += "}"
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write('{"data":[')
        # Written in slices: no single string of the whole page beyond a slice.
        for k in range(0, len(parts), 1000):
            if k:
                f.write(",")
            f.write(",".join(parts[k : k + 1000]))
        f.write('],"paging":')
        f.write(paging)
        f.write("}")
    os.replace(tmp, path)
    return {
        "rows": last - first,
        "impressions": impressions_sum,
        "clicks": clicks_sum,
        "spend_cents": spend_sum,
        "conversions": conv_sum,
        "conversion_value_cents": value_sum,
        "bytes": os.path.getsize(path),
    }


def default_signals():
    """In generator workers: SIGTERM ends the process (the parent's handler raises instead)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles ^C and terminates the pool


def generate(args, pages_dir):
    """The page files and their manifest; reused when --keep DIR already holds the same workload."""
    params = {
        "format": FORMAT,
        "campaigns": args.campaigns,
        "ads_per_campaign": args.ads_per_campaign,
        "days": DAYS,
        "page_rows": args.page_rows,
        "seed": args.seed,
    }
    manifest_path = os.path.join(pages_dir, "manifest.json")
    total_rows = args.campaigns * args.ads_per_campaign * DAYS
    pages = -(-total_rows // args.page_rows)
    files = [os.path.join(pages_dir, f"page-{p:06d}.json") for p in range(pages)]
    try:
        with open(manifest_path) as f:
            manifest = json.load(f)
        if manifest["params"] == params and all(os.path.exists(p) for p in files):
            log(f"reusing the {pages} pages in {pages_dir}")
            return manifest, files
    except (OSError, ValueError, KeyError):
        pass
    os.makedirs(pages_dir, exist_ok=True)
    for old in os.listdir(pages_dir):
        if old.startswith("page-") or old == "manifest.json":
            os.unlink(os.path.join(pages_dir, old))
    log(f"generating {total_rows:,} rows as {pages} pages into {pages_dir}")
    t0 = time.time()
    jobs = [(files[p], p, args.page_rows, args.campaigns, args.ads_per_campaign, pages, args.seed)
            for p in range(pages)]
    sums = {k: 0 for k in ("rows", "impressions", "clicks", "spend_cents", "conversions",
                           "conversion_value_cents", "bytes")}
    workers = max(1, min(os.cpu_count() or 1, pages))
    pool = multiprocessing.get_context("fork").Pool(workers, initializer=default_signals)
    try:
        for s in pool.imap_unordered(write_page, jobs, chunksize=1):
            for k in sums:
                sums[k] += s[k]
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()
    manifest = {"params": params, "pages": pages, "totals": sums}
    with open(manifest_path, "w") as f:
        json.dump(manifest, f, indent=1)
    log(f"generated in {time.time() - t0:.1f} s: {sums['bytes'] / 1e6:,.1f} MB of JSON")
    return manifest, files


# ------------------------------------------------------------------ queries


def queries(args):
    last = FIRST_DAY + datetime.timedelta(days=DAYS - 1)
    d30 = (last - datetime.timedelta(days=29)).isoformat()
    d100 = FIRST_DAY.isoformat()
    to = last.isoformat()
    one = campaign_id(args.campaigns // 2)
    # name, label, class (account | campaign), from, granularity, group_by campaign?, campaign filter
    return [
        ("a", "account, by campaign, total, 30 days", "account", d30, to, "total", True, None),
        ("b", "account, daily, 30 days", "account", d30, to, "day", False, None),
        ("c", "account, daily, 100 days", "account", d100, to, "day", False, None),
        ("d", "account, weekly, 100 days", "account", d100, to, "week", False, None),
        ("e", "one campaign, daily, 30 days", "campaign", d30, to, "day", False, one),
        ("f", "one campaign, weekly, 100 days", "campaign", d100, to, "week", False, one),
    ]


def adpipe_params(q, limit):
    _, _, _, frm, to, gran, by_campaign, campaign = q
    p = {"from": frm, "to": to, "granularity": gran, "account_id": ACCOUNT, "limit": str(limit)}
    if by_campaign:
        p["group_by"] = "campaign_id"
    if campaign:
        p["campaign_id"] = campaign
    return p


def duckdb_sql(q):
    _, _, _, frm, to, gran, by_campaign, campaign = q
    bucket = {"total": "NULL::DATE", "day": "date", "week": "date_trunc('week', date)::DATE"}[gran]
    group = "campaign_id" if by_campaign else "NULL::VARCHAR"
    where = f"account_id = '{ACCOUNT}' AND date BETWEEN DATE '{frm}' AND DATE '{to}'"
    if campaign:
        where += f" AND campaign_id = '{campaign}'"
    # The same answer adpipe gives: sums and the ratios computed from them.
    return f"""
      SELECT {bucket} AS bucket, {group} AS campaign_id, currency,
             sum(impressions) AS impressions, sum(clicks) AS clicks, sum(spend) AS spend,
             sum(conversions) AS conversions, sum(conversion_value) AS conversion_value,
             sum(clicks) / nullif(sum(impressions), 0) AS ctr,
             sum(spend) / nullif(sum(clicks), 0) AS cpc,
             1000 * sum(spend) / nullif(sum(impressions), 0) AS cpm,
             sum(spend) / nullif(sum(conversions), 0) AS cpa,
             sum(conversions) / nullif(sum(clicks), 0) AS cvr,
             sum(conversion_value) / nullif(sum(spend), 0) AS roas
      FROM facts WHERE {where}
      GROUP BY ALL ORDER BY bucket, campaign_id, currency"""


def to_cents(x):
    """Currency units (float from adpipe's JSON, Decimal from DuckDB) to integer cents."""
    return int(round(float(x) * 100)) if not hasattr(x, "as_tuple") else int(x * 100)


def normalize_duck(rows):
    out = {}
    for bucket, campaign, currency, imp, clk, spend, conv, value, *_ in rows:
        key = (bucket.isoformat() if bucket else None, campaign, currency)
        out[key] = (int(imp), int(clk), to_cents(spend), int(conv), to_cents(value))
    return out


def normalize_adpipe(rows, by_campaign):
    out = {}
    for r in rows:
        key = (r.get("date"), r.get("campaign_id") if by_campaign else None, r.get("currency"))
        if key in out:
            raise AnswerError(f"two rows for {key}")
        out[key] = (int(r.get("impressions") or 0), int(r.get("clicks") or 0),
                    to_cents(r.get("spend") or 0), int(round(float(r.get("conversions") or 0))),
                    to_cents(r.get("conversion_value") or 0))
    return out


class AnswerError(Exception):
    pass


FIELDS = ("impressions", "clicks", "spend cents", "conversions", "conversion value cents")


def differences(mine, theirs):
    diffs = []
    for key in sorted(set(mine) | set(theirs), key=str):
        a, b = mine.get(key), theirs.get(key)
        if a is None:
            diffs.append(f"{key}: missing from adpipe's answer (DuckDB: {b})")
        elif b is None:
            diffs.append(f"{key}: adpipe answers {a}, DuckDB has no such row")
        elif a != b:
            what = ", ".join(f"{n} {x} vs {y}" for n, x, y in zip(FIELDS, a, b) if x != y)
            diffs.append(f"{key}: adpipe vs DuckDB: {what}")
    return diffs


# ------------------------------------------------------------------ DuckDB side


def duckdb_side(args, files, qs):
    import duckdb

    con = duckdb.connect(":memory:")
    con.execute(f"SET threads = {os.cpu_count() or 1}")
    pages_glob = os.path.join(os.path.dirname(files[0]), "page-*.json")
    action = [{"action_type": "VARCHAR", "value": "VARCHAR"}]
    row = {k: "VARCHAR" for k in ("account_id", "account_currency", "campaign_id", "campaign_name",
                                  "adset_id", "ad_id", "date_start", "date_stop", "impressions",
                                  "clicks", "spend")}
    row.update(actions=action, action_values=action)
    shape = json.dumps({"data": [row]})
    # Conversions as the Meta adapter counts them with its default options: `purchase`
    # (the pixel's purchases are the same ones, so they are not added again).
    # (List comprehensions, not lambdas: their arrow syntax changed between DuckDB releases.)
    purchase = "[CAST(x.value AS {1}) FOR x IN r.{0} IF x.action_type = 'purchase']"
    # DuckDB's JSON reader: each page file is one object, its `data` unnested into rows.
    # read_json_objects + json_transform rather than read_json(columns=...): on 5,000-row
    # objects DuckDB 2.0's read_json spends ~80 us a row (16 s for 200,000 rows here, against
    # 1.2 s this way), and the baseline should be DuckDB at its fastest.
    load = f"""
      CREATE TABLE facts AS
      SELECT r.account_id AS account_id, r.account_currency AS currency, r.campaign_id AS campaign_id,
             r.adset_id AS adset_id, r.ad_id AS ad_id, CAST(r.date_start AS DATE) AS date,
             CAST(r.impressions AS BIGINT) AS impressions, CAST(r.clicks AS BIGINT) AS clicks,
             CAST(r.spend AS DECIMAL(18, 2)) AS spend,
             coalesce(list_sum({purchase.format('actions', 'BIGINT')}), 0) AS conversions,
             coalesce(list_sum({purchase.format('action_values', 'DECIMAL(18, 2)')}), 0) AS conversion_value
      FROM (SELECT unnest(json_transform(json, '{shape}').data) AS r
            FROM read_json_objects('{pages_glob}', format = 'auto', maximum_object_size = 1073741824))"""
    log(f"DuckDB {duckdb.__version__}: reading the pages (read_json_objects, in memory)...")
    t0 = time.perf_counter()
    con.execute(load)
    read_s = time.perf_counter() - t0
    (n, imp, clk, spend, conv, value) = con.execute(
        "SELECT count(*), sum(impressions), sum(clicks), sum(spend), sum(conversions), sum(conversion_value) FROM facts"
    ).fetchone()
    log(f"DuckDB: {n:,} rows in {read_s:.2f} s")
    answers, times = {}, {}
    for q in qs:
        sql = duckdb_sql(q)
        answers[q[0]] = normalize_duck(con.execute(sql).fetchall())  # warm-up, and the answer
        runs = []
        for _ in range(args.runs):
            t = time.perf_counter()
            con.execute(sql).fetchall()
            runs.append((time.perf_counter() - t) * 1000)
        times[q[0]] = runs
        log(f"DuckDB ({q[0]}) {q[1]}: median {statistics.median(runs):.2f} ms, {len(answers[q[0]])} rows")
    con.close()
    totals = {"rows": int(n), "impressions": int(imp), "clicks": int(clk), "spend_cents": to_cents(spend),
              "conversions": int(conv), "conversion_value_cents": to_cents(value)}
    return read_s, answers, times, totals, duckdb.__version__


# ------------------------------------------------------------------ adpipe side


class Server:
    def __init__(self, args, workdir, tag):
        self.args, self.workdir, self.tag = args, workdir, tag
        self.config = os.path.join(workdir, "pipelines.toml")
        self.data_dir = os.path.join(workdir, "data")
        self.log_path = os.path.join(workdir, "server.log")
        self.stdout_path = os.path.join(workdir, "server.stdout")
        self.proc = None
        self.base = None
        self.env = dict(os.environ, ADPIPE_JWT_SECRET=args.jwt_secret)
        self.env.setdefault("ADPIPE_LOG", "warn")
        for k in list(self.env):  # the config file says it all; no stray overrides
            if k.startswith("ADPIPE_") and "__" in k:
                del self.env[k]
        self.pg_db = None
        self.ch_db = None
        self.topic = None

    def write_config(self):
        a = self.args
        engines = ""
        if a.distributed:
            self.topic = f"adpipe.{self.tag}"
            self.ch_db = self.tag
            self.pg_db = self.tag
            engines = f"""
[bus]
kind = "kafka"
brokers = "{a.brokers}"
topic = "{self.topic}"
group = "adpipe-{self.tag}"
partitions = {a.partitions}

[store]
kind = "clickhouse"
url = "{a.clickhouse}"
database = "{self.ch_db}"

[metadata]
url = "{a.postgres.rsplit('/', 1)[0]}/{self.pg_db}"

[cache]
url = "{a.redis}"
"""
        with open(self.config, "w") as f:
            f.write(f"""# written by scripts/bench-scale
[server]
watch_plugins = false
max_body_bytes = 268435456
request_timeout_ms = 3600000   # a slow answer is measured, not cut off
max_concurrent_requests = 1024
{engines}
[api]
max_page_rows = {a.max_page_rows}
max_range_days = 731

[api.cache]
enabled = false                # every answer computed from the store

[api.rate_limits]
enabled = false

[[plugins]]
name = "meta"
path = "{a.plugin}"             # the default limits, as a deployment has them

[[pipelines]]
name = "{PIPELINE}"
tenant = "{TENANT}"
adapter = "meta"
""")

    def create_engines(self):
        if not self.args.distributed:
            return
        run = subprocess.run(["psql", self.args.postgres, "-q", "-c", f"CREATE DATABASE {self.pg_db}"],
                             capture_output=True, text=True)
        if run.returncode != 0:
            fail(f"PostgreSQL: CREATE DATABASE {self.pg_db}: {run.stderr.strip()}")

    def drop_engines(self):
        if not self.args.distributed or self.args.keep_engines:
            return
        if self.pg_db:
            subprocess.run(["psql", self.args.postgres, "-q", "-c",
                            f"DROP DATABASE IF EXISTS {self.pg_db} WITH (FORCE)"], capture_output=True)
        if self.ch_db:
            try:
                clickhouse(self.args.clickhouse, f"DROP DATABASE IF EXISTS {self.ch_db}")
            except OSError as e:
                log(f"ClickHouse: DROP DATABASE {self.ch_db}: {e}")
        # The run's topic stays on the broker: tansu 0.6.0's DeleteTopics deletes every topic of
        # the cluster (its topic_delete_by.sql filters by cluster only), which would take the
        # shared broker away from everyone else using it.
        if self.topic:
            log(f"Kafka topic {self.topic} left on the broker (deleting a topic on tansu 0.6.0 deletes them all)")

    def start(self):
        out = open(self.stdout_path, "wb")
        err = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [self.args.bin, "serve", "--config", self.config, "--listen", "127.0.0.1:0",
             "--data-dir", self.data_dir],
            stdout=out, stderr=err, env=self.env, cwd=self.workdir, start_new_session=True)
        for path in filter(None, (os.path.join(self.workdir, "server.pid"), self.args.pid_file)):
            with open(path, "w") as f:
                f.write(str(self.proc.pid))
        deadline = time.time() + 300
        while time.time() < deadline:
            if self.proc.poll() is not None:
                fail(f"adpipe serve exited at start ({self.proc.returncode}):\n{tail(self.log_path)}")
            with open(self.stdout_path) as f:
                for line in f:
                    if line.startswith("adpipe listening on http://"):
                        self.base = line.split("http://", 1)[1].strip()
            if self.base:
                break
            time.sleep(0.05)
        else:
            fail("adpipe serve did not say where it listens within 300 s")
        # Readiness: bus, store and metadata reachable.
        while time.time() < deadline:
            try:
                status, _, _ = request(self.base, "GET", "/readyz", timeout=10)
                if status == 200:
                    return
            except OSError:
                pass
            if self.proc.poll() is not None:
                fail(f"adpipe serve exited ({self.proc.returncode}):\n{tail(self.log_path)}")
            time.sleep(0.1)
        fail(f"adpipe serve not ready within 300 s:\n{tail(self.log_path)}")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def token(self, role):
        out = subprocess.run(
            [self.args.bin, "token", "--tenant", TENANT, "--role", role, "--ttl", "12h",
             "--config", self.config],
            env=self.env, cwd=self.workdir, capture_output=True, text=True)
        if out.returncode != 0:
            fail(f"adpipe token: {out.stderr.strip()}")
        return out.stdout.strip()

    def status_kb(self):
        """VmRSS and VmHWM of the server, in kB."""
        vals = {}
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith(("VmRSS:", "VmHWM:")):
                        k, v = line.split(":", 1)
                        vals[k] = int(v.split()[0])
        except OSError:
            pass
        return vals.get("VmRSS", 0), vals.get("VmHWM", 0)

    def reset_peak(self):
        """Reset VmHWM to the current RSS (Linux: write 5 to clear_refs)."""
        try:
            with open(f"/proc/{self.proc.pid}/clear_refs", "w") as f:
                f.write("5")
            return True
        except OSError:
            return False


def tail(path, n=30):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def request(base, method, path, body=None, token=None, timeout=3600, conn=None):
    """One request; on a kept-alive `conn` the server closed meanwhile, sent again once."""
    own = conn is None
    if own:
        host, port = base.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    try:
        for attempt in (0, 1):
            try:
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                return resp.status, data, resp.getheader("retry-after")
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                conn.close()
                if own or attempt:
                    raise
    finally:
        if own:
            conn.close()


def clickhouse(url, sql):
    req = urllib.request.Request(url.rstrip("/") + "/", data=sql.encode(), method="POST")
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.read().decode()


def dir_size(path):
    apparent = on_disk = 0
    for dirpath, _, names in os.walk(path):
        for n in names:
            try:
                st = os.lstat(os.path.join(dirpath, n))
            except OSError:
                continue
            apparent += st.st_size
            on_disk += st.st_blocks * 512
    return apparent, on_disk


class Peak:
    """Samples the server's VmRSS every few ms while a query runs; VmHWM (reset before) too."""

    def __init__(self, server):
        self.server = server
        self.stop = threading.Event()
        self.peak_kb = 0
        self.thread = None

    def __enter__(self):
        self.hwm_reset = self.server.reset_peak()
        self.stop.clear()
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()
        return self

    def sample(self):
        while not self.stop.is_set():
            rss, _ = self.server.status_kb()
            self.peak_kb = max(self.peak_kb, rss)
            self.stop.wait(0.005)

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        rss, hwm = self.server.status_kb()
        self.peak_kb = max(self.peak_kb, rss, hwm if self.hwm_reset else 0)


def insights_answer(server, token, params, conn):
    """Every page of one answer. Returns (rows, seconds spent in HTTP, pages)."""
    rows, spent, pages = [], 0.0, 0
    cursor = None
    while True:
        p = dict(params)
        if cursor:
            p["cursor"] = cursor
        path = "/v1/insights?" + urllib.parse.urlencode(p)
        t = time.perf_counter()
        status, body, _ = request(server.base, "GET", path, token=token, conn=conn)
        spent += time.perf_counter() - t
        pages += 1
        if status != 200:
            raise AnswerError(f"GET {path}: {status} {body[:300]!r}")
        answer = json.loads(body)
        rows.extend(answer["rows"])
        cursor = answer.get("next_cursor")
        if not cursor:
            return rows, spent, pages


def push_all(server, token, files, concurrency):
    """POST every page; retries 429/503 after Retry-After. Returns (rows accepted, retries)."""
    local = threading.local()
    retries = [0]
    lock = threading.Lock()
    host, port = server.base.rsplit(":", 1)

    def push(path):
        with open(path, "rb") as f:
            body = f.read()
        while True:
            conn = getattr(local, "conn", None)
            if conn is None:
                conn = local.conn = http.client.HTTPConnection(host, int(port), timeout=3600)
            try:
                status, answer, retry_after = request(
                    server.base, "POST", f"/v1/pipelines/{PIPELINE}/reports", body, token, conn=conn)
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                local.conn = None
                if server.proc.poll() is not None:
                    raise BenchError(f"adpipe serve died while ingesting:\n{tail(server.log_path)}") from e
                status, answer, retry_after = 0, str(e).encode(), None
            if status == 202:
                return json.loads(answer)["accepted"]
            if status not in (0, 429, 503):
                raise BenchError(f"{os.path.basename(path)}: {status} {answer[:300]!r}")
            with lock:
                retries[0] += 1
            time.sleep(min(float(retry_after or 0.2), 5.0))

    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        accepted = sum(pool.map(push, files))
    return accepted, retries[0]


def account_totals(server, token, conn):
    frm = FIRST_DAY.isoformat()
    to = (FIRST_DAY + datetime.timedelta(days=DAYS - 1)).isoformat()
    rows, spent, _ = insights_answer(server, token, {
        "from": frm, "to": to, "granularity": "total", "account_id": ACCOUNT,
        "metrics": "impressions,clicks,spend,conversions,conversion_value"}, conn)
    t = {"impressions": 0, "clicks": 0, "spend_cents": 0, "conversions": 0, "conversion_value_cents": 0}
    for r in rows:
        t["impressions"] += int(r.get("impressions") or 0)
        t["clicks"] += int(r.get("clicks") or 0)
        t["spend_cents"] += to_cents(r.get("spend") or 0)
        t["conversions"] += int(round(float(r.get("conversions") or 0)))
        t["conversion_value_cents"] += to_cents(r.get("conversion_value") or 0)
    return t, spent


def adpipe_side(args, files, manifest, qs, workdir):
    tag = f"bench_{uuid.uuid4().hex[:10]}"
    server = Server(args, workdir, tag)
    server.write_config()
    server.create_engines()
    result = {"mode": "distributed" if args.distributed else "embedded"}
    try:
        server.start()
        log(f"adpipe serve on {server.base} (pid {server.proc.pid}), "
            f"{'distributed: ' + tag if args.distributed else 'embedded: ' + server.data_dir}")
        ingest_token, viewer = server.token("ingest"), server.token("viewer")
        expected = {k: manifest["totals"][k] for k in
                    ("impressions", "clicks", "spend_cents", "conversions", "conversion_value_cents")}
        rss0, _ = server.status_kb()
        server.reset_peak()

        log(f"pushing {len(files)} pages ({manifest['totals']['rows']:,} rows) with {args.concurrency} clients...")
        t0 = time.perf_counter()
        accepted, retries = push_all(server, ingest_token, files, args.concurrency)
        t_accepted = time.perf_counter() - t0
        if accepted != manifest["totals"]["rows"]:
            raise BenchError(f"the server accepted {accepted:,} rows of {manifest['totals']['rows']:,}")
        log(f"all pages accepted after {t_accepted:.1f} s ({retries} re-sent after 429/503)")

        conn = http.client.HTTPConnection(*server.base.rsplit(":", 1), timeout=3600)
        t_lag0 = None
        deadline = time.perf_counter() + args.ingest_timeout
        while time.perf_counter() < deadline:  # cheap first: the bus lag
            try:
                status, body, _ = request(server.base, "GET", "/readyz", timeout=30)
                lag = json.loads(body).get("bus_lag_records")
            except (OSError, ValueError):
                lag = None
            if lag == 0 or lag is None:
                t_lag0 = time.perf_counter() - t0 if lag == 0 else None
                break
            time.sleep(0.1)
        polls = 0
        while True:
            got, spent = account_totals(server, viewer, conn)
            polls += 1
            if got == expected:
                t_applied = time.perf_counter() - t0
                break
            if time.perf_counter() > deadline:
                raise BenchError(f"account totals not equal to the generated ones after "
                                 f"{args.ingest_timeout} s: got {got}, expected {expected}")
            time.sleep(0.2)
        rows = manifest["totals"]["rows"]
        log(f"applied: account totals equal after {t_applied:.1f} s ({rows / t_applied:,.0f} rows/s; "
            f"the confirming query took {spent * 1000:.0f} ms, {polls} poll(s))")
        rss_after, hwm_ingest = server.status_kb()
        result.update({
            "ingest_accepted_s": t_accepted, "ingest_lag0_s": t_lag0, "ingest_applied_s": t_applied,
            "ingest_rows_per_s": rows / t_applied, "ingest_retries": retries,
            "confirm_query_ms": spent * 1000, "rss_start_mb": rss0 / 1024,
            "rss_after_ingest_mb": rss_after / 1024, "rss_peak_ingest_mb": hwm_ingest / 1024,
        })
        if not args.distributed:
            apparent, on_disk = dir_size(server.data_dir)
            files_in = {}
            for n in sorted(os.listdir(server.data_dir)):
                files_in[n] = dir_size(os.path.join(server.data_dir, n))[0] if os.path.isdir(
                    os.path.join(server.data_dir, n)) else os.path.getsize(os.path.join(server.data_dir, n))
            result.update({"data_dir_bytes": apparent, "data_dir_on_disk_bytes": on_disk,
                           "data_dir_files": files_in})
        else:
            result.update(engine_sizes(args, server))

        answers, times, peaks, pages = {}, {}, {}, {}
        for q in qs:
            params = adpipe_params(q, args.max_page_rows)
            with Peak(server) as peak:
                got, _, n_pages = insights_answer(server, viewer, params, conn)  # warm-up, and the answer
                runs = []
                for _ in range(args.runs):
                    _, spent, _ = insights_answer(server, viewer, params, conn)
                    runs.append(spent * 1000)
            answers[q[0]] = normalize_adpipe(got, q[6])
            times[q[0]] = runs
            peaks[q[0]] = peak.peak_kb / 1024
            pages[q[0]] = n_pages
            log(f"adpipe ({q[0]}) {q[1]}: median {statistics.median(runs):.1f} ms, {len(got)} rows "
                f"in {n_pages} page(s), peak RSS {peaks[q[0]]:.0f} MB")
        conn.close()
        result.update({"answers": answers, "times": times, "peak_rss_mb": peaks, "answer_pages": pages})
        return result
    finally:
        server.stop()
        server.drop_engines()


def engine_sizes(args, server):
    out = {}
    try:
        text = clickhouse(args.clickhouse,
                          f"SELECT sum(bytes) FROM system.parts WHERE database = '{server.ch_db}' AND active")
        out["clickhouse_bytes"] = int(float(text.strip() or 0))
    except (OSError, ValueError) as e:
        log(f"ClickHouse size: {e}")
    run = subprocess.run(["psql", args.postgres.rsplit("/", 1)[0] + "/" + server.pg_db, "-At", "-c",
                          "SELECT pg_database_size(current_database())"], capture_output=True, text=True)
    if run.returncode == 0 and run.stdout.strip().isdigit():
        out["postgres_bytes"] = int(run.stdout.strip())
    return out


# ------------------------------------------------------------------ report


def fmt_ms(x):
    return f"{x:,.1f}" if x >= 10 else f"{x:.2f}"


def yes(ok):
    return "yes" if ok else "NO"


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = 0
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) // 1024 // 1024
    except (OSError, ValueError, IndexError):
        pass
    return f"{os.cpu_count()} cores ({cpu}), {mem} GB RAM, {platform.system()} {platform.release()}"


def report(args, manifest, qs, duck, mine, baseline):
    read_s, duck_answers, duck_times, _, duck_version = duck
    rows = manifest["totals"]["rows"]
    json_bytes = manifest["totals"]["bytes"]
    mode = mine["mode"]
    lines = []
    p = lines.append
    p("")
    p(f"scripts/bench-scale: {rows:,} Meta rows ({args.campaigns:,} campaigns x {args.ads_per_campaign} ads "
      f"x {DAYS} days, level=ad), {manifest['pages']} pages of {args.page_rows:,} rows, "
      f"{json_bytes / 1e6:,.1f} MB of JSON; {mode}; answer cache off; median of {args.runs} runs")
    p(f"machine: {machine()}")
    p(f"adpipe: {args.bin}; DuckDB {duck_version} (in memory, {os.cpu_count()} threads)")
    p("")
    growth = baseline is not None
    head = (f"{'query':<40}{'adpipe ms':>11}{'DuckDB ms':>11}{'ratio':>9}{'target':>8}{'met':>5}"
            f"{'peak RSS MB':>13}{'<300':>6}")
    if growth:
        head += f"{'vs ' + format(baseline['rows'], ',') + ' rows':>18}{'<=1.5x':>8}"
    p(head)
    p("-" * len(head))
    met_all = True
    results = {}
    for q in qs:
        k = q[0]
        a = statistics.median(mine["times"][k])
        d = statistics.median(duck_times[k])
        ratio = a / d if d > 0 else float("inf")
        target = TARGET_ACCOUNT_RATIO if q[2] == "account" else TARGET_CAMPAIGN_RATIO
        rss = mine["peak_rss_mb"][k]
        ok, rss_ok = ratio <= target, rss < TARGET_RSS_MB
        met_all &= ok and rss_ok
        line = (f"({k}) {q[1]:<36}{fmt_ms(a):>11}{fmt_ms(d):>11}{ratio:>8.1f}x{'<=' + format(target, 'g') + 'x':>8}"
                f"{yes(ok):>5}{rss:>13.0f}{yes(rss_ok):>6}")
        results[k] = {"label": q[1], "adpipe_ms": a, "duckdb_ms": d, "ratio": ratio, "target": target,
                      "met": ok, "peak_rss_mb": rss, "rss_met": rss_ok,
                      "adpipe_runs_ms": mine["times"][k], "duckdb_runs_ms": duck_times[k],
                      "answer_rows": len(duck_answers[k]), "answer_pages": mine["answer_pages"][k]}
        if growth and k in baseline["queries"]:
            g = a / baseline["queries"][k]["adpipe_ms"]
            met_all &= g <= TARGET_GROWTH
            line += f"{g:>17.2f}x{yes(g <= TARGET_GROWTH):>8}"
            results[k]["growth"] = g
        p(line)
    p("")
    ingest_s = mine["ingest_applied_s"]
    rate = mine["ingest_rows_per_s"]
    rate_target = TARGET_INGEST_DISTRIBUTED if mode == "distributed" else TARGET_INGEST_EMBEDDED
    vs_read = ingest_s / read_s
    rate_ok, vs_ok = rate >= rate_target, vs_read <= TARGET_INGEST_VS_READ_JSON
    met_all &= rate_ok and vs_ok
    p(f"ingest until applied      {ingest_s:,.1f} s = {rate / 1000:,.1f} k rows/s "
      f"(target >= {rate_target // 1000} k: {yes(rate_ok)}); DuckDB load {read_s:.2f} s, "
      f"ratio {vs_read:.1f}x (target <= {TARGET_INGEST_VS_READ_JSON:g}x: {yes(vs_ok)})")
    lag0 = mine.get("ingest_lag0_s")
    p(f"  last 202 after {mine['ingest_accepted_s']:.1f} s ({rows / mine['ingest_accepted_s'] / 1000:,.1f} k rows/s "
      f"accepted); bus lag 0 after {'%.1f s' % lag0 if lag0 is not None else '?'}; the confirming totals query "
      f"took {mine['confirm_query_ms']:,.0f} ms; {mine['ingest_retries']} pushes re-sent (429/503)")
    p(f"  server RSS: {mine['rss_start_mb']:.0f} MB at start, peak {mine['rss_peak_ingest_mb']:.0f} MB "
      f"while ingesting, {mine['rss_after_ingest_mb']:.0f} MB after")
    summary = {"ingest_s": ingest_s, "ingest_rows_per_s": rate, "read_json_s": read_s,
               "ingest_vs_read_json": vs_read, "ingest_met": rate_ok and vs_ok}
    if mode == "embedded":
        size = mine["data_dir_bytes"]
        r = size / json_bytes
        ok = r <= TARGET_DATA_DIR_RATIO
        met_all &= ok
        biggest = ", ".join(f"{n} {b / 1e6:,.1f} MB" for n, b in
                            sorted(mine["data_dir_files"].items(), key=lambda x: -x[1])[:5])
        p(f"data dir after ingest     {size / 1e6:,.1f} MB = {r:.2f}x the JSON pushed "
          f"(target <= {TARGET_DATA_DIR_RATIO:g}x: {yes(ok)}); on disk {mine['data_dir_on_disk_bytes'] / 1e6:,.1f} MB; "
          f"{biggest}")
        summary.update({"data_dir_bytes": size, "data_dir_ratio": r, "data_dir_met": ok})
    else:
        parts = []
        if "clickhouse_bytes" in mine:
            parts.append(f"ClickHouse database {mine['clickhouse_bytes'] / 1e6:,.1f} MB")
        if "postgres_bytes" in mine:
            parts.append(f"PostgreSQL metadata {mine['postgres_bytes'] / 1e6:,.1f} MB")
        p(f"stored (distributed)      {'; '.join(parts) or '?'} (for {json_bytes / 1e6:,.1f} MB of JSON; no target)")
        summary.update({k: mine[k] for k in ("clickhouse_bytes", "postgres_bytes") if k in mine})
    p(f"JSON pushed               {json_bytes:,} bytes ({json_bytes / rows:.0f} bytes a row)")
    p("")
    return lines, results, summary, met_all


# ------------------------------------------------------------------ main


def main():
    ap = argparse.ArgumentParser(prog="scripts/bench-scale", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rows", nargs="?", type=int,
                    help="rows to generate: campaigns x ads-per-campaign x 100 days "
                         "(default: 1,000 campaigns, so 1,000,000 rows at 10 ads)")
    ap.add_argument("--distributed", action="store_true",
                    help="Kafka (tansu) + ClickHouse + PostgreSQL + Redis of scripts/services.sh")
    ap.add_argument("--ads-per-campaign", type=int, default=10)
    ap.add_argument("--page-rows", type=int, default=5000)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--plugin", default=os.path.join(ROOT, "dist/plugins/meta.wasm"))
    ap.add_argument("--keep", metavar="DIR", help="write the pages (and logs) here and keep them; "
                    "pages already there for the same workload are reused")
    ap.add_argument("--keep-engines", action="store_true",
                    help="distributed: leave the run's ClickHouse and PostgreSQL databases")
    ap.add_argument("--runs", type=int, default=5, help="timed runs per query (median), after one warm-up")
    ap.add_argument("--concurrency", type=int, default=3, help="clients pushing pages at once (2-4)")
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--max-page-rows", type=int, default=10000,
                    help="api.max_page_rows of the server, and the limit asked for")
    ap.add_argument("--ingest-timeout", type=float, default=7200.0)
    ap.add_argument("--json", metavar="FILE", help="also write the figures here")
    ap.add_argument("--baseline", metavar="FILE",
                    help="a --json file of an earlier run (e.g. 1 M rows): prints each query's growth")
    ap.add_argument("--skip-adpipe", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--pid-file", help=argparse.SUPPRESS)  # the bash side stops the server by it
    ap.add_argument("--brokers", default=os.environ.get("ADPIPE_TEST_KAFKA_BROKERS", "127.0.0.1:9092"))
    ap.add_argument("--clickhouse", default=os.environ.get("ADPIPE_TEST_CLICKHOUSE_URL", "http://127.0.0.1:8123"))
    ap.add_argument("--postgres", default=os.environ.get("ADPIPE_TEST_POSTGRES_URL",
                                                         "postgres://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--redis", default=os.environ.get("ADPIPE_TEST_REDIS_URL", "redis://127.0.0.1:6379"))
    ap.add_argument("--partitions", type=int, default=6)
    args = ap.parse_args()

    if args.ads_per_campaign < 1 or args.page_rows < 1 or args.runs < 1 or args.concurrency < 1:
        ap.error("--ads-per-campaign, --page-rows, --runs and --concurrency must be at least 1")
    per_campaign = args.ads_per_campaign * DAYS
    if args.rows is None:
        args.campaigns = 1000
    else:
        if args.rows <= 0 or args.rows % per_campaign:
            ap.error(f"rows must be a positive multiple of ads-per-campaign x {DAYS} days = {per_campaign:,}")
        args.campaigns = args.rows // per_campaign
    args.bin = os.path.abspath(args.bin)
    args.plugin = os.path.abspath(args.plugin)
    if not os.access(args.bin, os.X_OK) and not args.skip_adpipe:
        ap.error(f"no adpipe binary at {args.bin}")
    if not os.path.exists(args.plugin) and not args.skip_adpipe:
        ap.error(f"no Meta plugin at {args.plugin} (scripts/build-plugins)")
    args.jwt_secret = "bench-scale-" + uuid.uuid4().hex + uuid.uuid4().hex  # >= 32 bytes
    baseline = None
    if args.baseline:
        with open(args.baseline) as f:
            b = json.load(f)
        baseline = {"rows": b["rows"], "queries": b["queries"]}

    if args.keep:
        workdir = os.path.abspath(args.keep)
        os.makedirs(workdir, exist_ok=True)
        run_dir = tempfile.mkdtemp(prefix="run-", dir=workdir)
    else:
        workdir = tempfile.mkdtemp(prefix="adpipe-bench-scale-")
        run_dir = workdir
    pages_dir = os.path.join(workdir, "pages")
    clean = not args.keep
    try:
        manifest, files = generate(args, pages_dir)
        qs = queries(args)
        duck = duckdb_side(args, files, qs)
        for k in ("rows", "impressions", "clicks", "spend_cents", "conversions", "conversion_value_cents"):
            if duck[3][k] != manifest["totals"][k]:
                fail(f"DuckDB read {k} = {duck[3][k]}, the generator wrote {manifest['totals'][k]}")
        if args.skip_adpipe:
            return 0
        mine = adpipe_side(args, files, manifest, qs, run_dir)

        wrong = {}
        for q in qs:
            diffs = differences(mine["answers"][q[0]], duck[1][q[0]])
            if diffs:
                wrong[q[0]] = diffs
        lines, results, summary, met_all = report(args, manifest, qs, duck, mine, baseline)
        print("\n".join(lines), flush=True)
        compared = sum(len(duck[1][q[0]]) for q in qs)
        if wrong:
            clean = False
            print("ANSWERS DIFFER between adpipe and DuckDB:")
            for k, diffs in wrong.items():
                print(f"  ({k}) {len(diffs)} difference(s):")
                for d in diffs[:20]:
                    print(f"    {d}")
            print(f"(server log and config kept in {run_dir})")
        else:
            print(f"answers: identical ({len(qs)} queries, {compared:,} rows: impressions, clicks, "
                  f"conversions exactly; spend and conversion value to the cent)")
        print(f"targets: {'all met' if met_all else 'some missed (reported above; not a failure)'}")
        out = {
            "rows": manifest["totals"]["rows"], "campaigns": args.campaigns,
            "ads_per_campaign": args.ads_per_campaign, "days": DAYS, "pages": manifest["pages"],
            "json_bytes": manifest["totals"]["bytes"], "mode": mine["mode"], "runs": args.runs,
            "machine": machine(), "bin": args.bin, "answers_equal": not wrong, "targets_met": met_all,
            "queries": results, **summary,
            "ingest": {k: mine[k] for k in mine if k.startswith(("ingest_", "rss_", "confirm_"))},
        }
        with open(os.path.join(run_dir, "results.json"), "w") as f:
            json.dump(out, f, indent=1)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(out, f, indent=1)
        return 1 if wrong else 0
    finally:
        if clean:
            shutil.rmtree(workdir, ignore_errors=True)


def entry():
    def terminated(signum, _frame):
        raise BenchError(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, terminated)
    try:
        return main()
    except BenchError as e:
        log(f"ERROR: {e}")
        return 2
    except KeyboardInterrupt:
        log("interrupted")
        return 2
    except Exception:  # noqa: BLE001 - any other failure is exit 2, never 1 (1 = answers differ)
        import traceback

        traceback.print_exc()
        return 2


if __name__ == "__main__":
    sys.exit(entry())
