#!/usr/bin/env python3
"""The built-in dashboard in a real browser (headless Chromium through Playwright) against a
running `adpipe serve` (scripts/test-dashboard starts one and calls this).

    dashboard_test.py BASE ADMIN_TOKEN VIEWER_TOKEN INGEST_TOKEN OUTDIR

1. pushes the Meta fixtures through POST /v1/pipelines/meta/reports (and one unparseable body,
   kept as a dead letter) and waits until /v1/insights shows them;
2. signs in with the admin token, sets the fixtures' date range, and checks every campaign
   row's spend, impressions and clicks (and the per-currency totals) against /v1/insights
   fetched directly with the same token; checks the charts drew and the table sorts;
3. narrows the range to the first day, then to a range without data, and checks again;
4. screenshots the performance view, opens the pipelines tab and checks the meta pipeline's
   adapter version, rows accepted today and dead letters; screenshots it;
5. signs in as a viewer: the pipelines tab says the roles cannot see pipelines;
6. signs in with a wrong token: the sign-in form shows the 401.

Also: no page errors, no CSP violations, no request to another origin, the CSP header is
sent, and the token lives in sessionStorage only until "Sign out".
Prints one summary line; exits 1 on any failure.
"""

import json
import pathlib
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

REPO = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = REPO / "plugins/adapters/meta/tests/fixtures"
PUSHED = ["insights_campaign.json", "insights_ad_page1.json", "insights_ad_page2.json"]
TOKEN_KEY = "adpipe.dashboard.token"
TIMEOUT_MS = 20_000


class Failure(Exception):
    pass


failures = []
passed = []


def check(ok, what):
    if ok:
        passed.append(what)
    else:
        failures.append(what)
        print(f"FAIL: {what}", flush=True)
    return ok


def http(base, method, path, token, body=None, content_type="application/json"):
    req = urllib.request.Request(base + path, method=method, data=body)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=30) as res:
            return res.status, dict(res.headers), res.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def api_json(base, path, token):
    status, _, body = http(base, "GET", path, token)
    if status != 200:
        raise Failure(f"GET {path} answered {status}: {body[:300]!r}")
    return json.loads(body)


def insights_all(base, token, **params):
    """Every page of /v1/insights (follows next_cursor)."""
    rows, cursor = [], None
    while True:
        q = dict(params)
        if cursor:
            q["cursor"] = cursor
        body = api_json(base, "/v1/insights?" + urllib.parse.urlencode(q), token)
        rows.extend(body["rows"])
        cursor = body.get("next_cursor")
        if not cursor:
            return rows


def fixture_dates():
    dates = set()
    for name in PUSHED:
        for row in json.loads((FIXTURES / name).read_text())["data"]:
            dates.add(row["date_start"])
    return sorted(dates)


def push_fixtures(base, ingest):
    for name in PUSHED:
        status, _, body = http(base, "POST", "/v1/pipelines/meta/reports", ingest, (FIXTURES / name).read_bytes())
        if status != 202:
            raise Failure(f"POST {name} to /v1/pipelines/meta/reports answered {status}: {body[:300]!r}")
    # One body the adapter cannot read: kept as a dead letter the pipelines view must show.
    status, _, _ = http(base, "POST", "/v1/pipelines/meta/reports", ingest, b'{"data": "not a list"}')
    check(status == 400, f"an unreadable report is refused with 400 (got {status})")


def wait_for_data(base, token, first, last):
    deadline = time.time() + 30
    while time.time() < deadline:
        rows = insights_all(base, token, **{"from": first, "to": last, "granularity": "total", "group_by": "campaign_id"})
        if rows:
            return rows
        time.sleep(0.3)
    raise Failure(f"/v1/insights shows no rows for {first}..{last} 30 s after the pushes")


def money_equal(a, b):
    return a is not None and b is not None and round(float(a) * 100) == round(float(b) * 100)


def count_equal(a, b):
    return a is not None and b is not None and float(a) == float(b)


class Dashboard:
    def __init__(self, page, base):
        self.page = page
        self.base = base

    def tid(self, testid):
        return self.page.locator(f'[data-testid="{testid}"]')

    def sign_in(self, token):
        self.tid("signin-token").fill(token)
        self.tid("signin-submit").click()

    def wait_signed_in(self):
        self.page.wait_for_selector('body[data-signed-in="true"]', timeout=TIMEOUT_MS)

    def sign_out(self):
        self.tid("signout").click()
        self.page.wait_for_selector('[data-testid="signin"]:not(.hidden)', timeout=TIMEOUT_MS)

    def load_range(self, first, last):
        self.tid("tab-performance").click()
        self.tid("from").fill(first)
        self.tid("to").fill(last)
        self.tid("apply").click()
        self.page.wait_for_selector(
            f'[data-testid="performance-view"][data-loaded^="{first}|{last}|"]', timeout=TIMEOUT_MS
        )
        state = self.tid("perf-status").get_attribute("data-state")
        if state != "ready":
            raise Failure(f"performance view for {first}..{last}: {state}: {self.tid('perf-status').inner_text()}")

    def campaign_tables(self):
        """{currency: [{campaign_id, platform, name, spend, impressions, clicks}]} as shown."""
        return self.page.evaluate(
            """() => {
              const out = {};
              for (const t of document.querySelectorAll('[data-testid^="campaign-table-"]')) {
                out[t.dataset.currency] = [...t.querySelectorAll('[data-testid="campaign-row"]')].map((tr) => {
                  const row = { campaign_id: tr.dataset.campaignId, platform: tr.dataset.platform,
                    name: tr.querySelector('[data-field="campaign-name"]').textContent };
                  for (const td of tr.querySelectorAll('td[data-metric]')) {
                    row[td.dataset.metric] = td.dataset.value === '' ? null : Number(td.dataset.value);
                    row[td.dataset.metric + '_text'] = td.textContent;
                  }
                  return row;
                });
              }
              return out;
            }"""
        )

    def totals(self):
        return self.page.evaluate(
            """() => {
              const out = {};
              for (const t of document.querySelectorAll('[data-testid^="totals-"]')) {
                const c = t.dataset.testid.slice('totals-'.length);
                out[c] = {};
                for (const k of t.querySelectorAll('[data-metric]'))
                  out[c][k.dataset.metric] = k.dataset.value === '' ? null : Number(k.dataset.value);
              }
              return out;
            }"""
        )


def compare_range(dash, base, token, first, last, label, filters=None):
    """The campaign tables and totals shown equal /v1/insights for first..last (and filters)."""
    filters = filters or {}
    dash.load_range(first, last)
    expected = insights_all(
        base, token, **{"from": first, "to": last, "granularity": "total", "group_by": "campaign_id", **filters}
    )
    expected_totals = insights_all(base, token, **{"from": first, "to": last, "granularity": "total", **filters})
    shown = dash.campaign_tables()
    currencies = sorted({r["currency"] for r in expected})
    check(sorted(shown) == currencies, f"{label}: one campaign table per currency {currencies} (shown {sorted(shown)})")
    for cur in currencies:
        want = {(r.get("platform") or "", r["campaign_id"]): r for r in expected if r["currency"] == cur}
        got = {(r["platform"], r["campaign_id"]): r for r in shown.get(cur, [])}
        check(set(got) == set(want), f"{label} {cur}: campaigns shown {sorted(got)} = API {sorted(want)}")
        for key, w in want.items():
            g = got.get(key)
            if g is None:
                continue
            check(money_equal(g["spend"], w["spend"]), f"{label} {cur} {key[1]}: spend {g['spend']} = API {w['spend']}")
            check(count_equal(g["impressions"], w["impressions"]), f"{label} {cur} {key[1]}: impressions {g['impressions']} = API {w['impressions']}")
            check(count_equal(g["clicks"], w["clicks"]), f"{label} {cur} {key[1]}: clicks {g['clicks']} = API {w['clicks']}")
            check(money_equal(g["conversion_value"], w["conversion_value"]), f"{label} {cur} {key[1]}: conversion value {g['conversion_value']} = API {w['conversion_value']}")
            name = w.get("campaign_name") or w["campaign_id"]
            check(g["name"] == name, f"{label} {cur} {key[1]}: name {g['name']!r} = {name!r}")
            cents = f"{float(w['spend']):,.2f}"
            check(cents in g["spend_text"], f"{label} {cur} {key[1]}: spend shown as {g['spend_text']!r} contains {cents}")
    shown_totals = dash.totals()
    for t in expected_totals:
        cur = t["currency"]
        s = shown_totals.get(cur, {})
        check(
            money_equal(s.get("spend"), t["spend"]) and count_equal(s.get("impressions"), t["impressions"])
            and count_equal(s.get("clicks"), t["clicks"]),
            f"{label} {cur}: totals shown {s.get('spend')}/{s.get('impressions')}/{s.get('clicks')} = API {t['spend']}/{t['impressions']}/{t['clicks']}",
        )
    check(len(shown_totals) == len(expected_totals), f"{label}: {len(expected_totals)} currency totals shown (got {len(shown_totals)})")
    return expected, expected_totals


def main():
    if len(sys.argv) != 6:
        print(__doc__)
        return 2
    base, admin, viewer, ingest, outdir = sys.argv[1:]
    base = base.rstrip("/")
    outdir = pathlib.Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    host = urllib.parse.urlsplit(base).netloc

    dates = fixture_dates()
    first, last = dates[0], dates[-1]

    # --- 1. data ---------------------------------------------------------------------
    push_fixtures(base, ingest)
    wait_for_data(base, admin, first, last)

    status, headers, body = http(base, "GET", "/", None)
    if status != 200 or b'data-testid="signin"' not in body:
        raise Failure(f"GET / does not serve the dashboard (status {status}): is the dashboard route in this build?")
    csp = {k.lower(): v for k, v in headers.items()}.get("content-security-policy", "")
    check("default-src 'self'" in csp, f"GET / sends a CSP with default-src 'self' (got {csp!r})")
    for asset in ["app.js", "app.css", "uplot.min.js", "uplot.min.css"]:
        s, _, _ = http(base, "GET", f"/assets/{asset}", None)
        check(s == 200, f"GET /assets/{asset} is 200 without a token (got {s})")
    s, _, _ = http(base, "GET", "/assets/uplot.LICENSE", None)
    check(s == 404, f"GET /assets/uplot.LICENSE is 404 (got {s})")

    page_errors = []
    foreign = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.on("pageerror", lambda e: page_errors.append(f"page error: {e}"))
        page.on(
            "console",
            lambda m: page_errors.append(f"console {m.type}: {m.text}")
            if m.type == "error" and "401" not in m.text and "403" not in m.text
            else None,
        )
        page.on("request", lambda r: foreign.append(r.url) if urllib.parse.urlsplit(r.url).netloc not in (host, "") and not r.url.startswith("data:") else None)
        dash = Dashboard(page, base)

        # --- 2. admin: the fixtures' range -------------------------------------------------
        page.goto(base + "/")
        page.wait_for_selector('body[data-ready="true"]')
        dash.sign_in(admin)
        dash.wait_signed_in()
        stored = page.evaluate(f"() => sessionStorage.getItem('{TOKEN_KEY}')")
        check(stored == admin, "the token is kept in sessionStorage")
        check(page.evaluate(f"() => localStorage.length") == 0, "nothing is kept in localStorage")
        full, full_totals = compare_range(dash, base, admin, first, last, f"{first}..{last}")
        check(len(full) >= 2, f"{first}..{last}: the fixtures hold at least two campaigns (got {len(full)})")
        for cur in sorted({r["currency"] for r in full}):
            canvases = page.locator(f'[data-testid="currency-{cur}"] .uplot canvas').count()
            check(canvases >= 4, f"{cur}: four uPlot charts drawn (got {canvases} canvases)")

        # Sorting: spend descending by default; a click sorts ascending, another descending.
        cur = sorted({r["currency"] for r in full})[0]
        spends = lambda: [r["spend"] for r in dash.campaign_tables()[cur]]
        check(spends() == sorted(spends(), reverse=True), f"{cur}: rows sorted by spend descending at first")
        dash.tid("sort-spend").first.click()
        check(spends() == sorted(spends()), f"{cur}: a click on Spend sorts ascending ({spends()})")
        dash.tid("sort-clicks").first.click()
        clicks = [r["clicks"] for r in dash.campaign_tables()[cur]]
        check(clicks == sorted(clicks, reverse=True), f"{cur}: a click on Clicks sorts by clicks descending ({clicks})")
        dash.tid("sort-spend").first.click()

        # A filter: one campaign.
        one = sorted(r["campaign_id"] for r in full)[0]
        dash.tid("filter-campaign").fill(one)
        shown_one, _ = compare_range(dash, base, admin, first, last, f"campaign {one}", {"campaign_id": one})
        check(page.locator('[data-testid="campaign-row"]').count() == 1, f"the campaign filter keeps only {one}")
        dash.tid("filter-campaign").fill("")

        # A metric plugin's metric adds a column with the plugin's values.
        options = dash.tid("extra-metrics").locator("option")
        names = [options.nth(i).get_attribute("value") for i in range(options.count())]
        catalog = api_json(base, "/v1/metrics", admin)["metrics"]
        plugin_metrics = [m["name"] for m in catalog if m["kind"] in ("plugin", "extra")]
        check(sorted(names) == sorted(plugin_metrics), f"the metric picker lists the plugin and extra metrics ({names})")
        if "cost_per_lead" in names:
            dash.tid("extra-metrics").select_option(["cost_per_lead"])
            dash.load_range(first, last)
            want = insights_all(base, admin, **{"from": first, "to": last, "granularity": "total",
                                                "group_by": "campaign_id", "metrics": "spend,cost_per_lead"})
            got = {(r["platform"], r["campaign_id"]): r.get("cost_per_lead", "missing")
                   for rows in dash.campaign_tables().values() for r in rows}
            for w in want:
                g = got.get((w.get("platform") or "", w["campaign_id"]), "missing")
                ok = g == w["cost_per_lead"] if w["cost_per_lead"] is None or g in (None, "missing") else abs(g - w["cost_per_lead"]) < 1e-9
                check(ok, f"cost_per_lead of {w['campaign_id']}: shown {g} = API {w['cost_per_lead']}")
            dash.tid("extra-metrics").select_option([])
        else:
            check(False, f"the metric plugin `leads` offers cost_per_lead (offered: {names})")

        # A reload keeps the session (sessionStorage) and shows the same data.
        page.reload()
        dash.wait_signed_in()
        check(dash.tid("signin").is_hidden(), "a reload keeps the session")

        # --- 3. part of the range, then none ------------------------------------------------
        part, part_totals = compare_range(dash, base, admin, first, first, f"{first}..{first}")
        full_spend = sum(float(t["spend"]) for t in full_totals)
        part_spend = sum(float(t["spend"]) for t in part_totals)
        check(part_spend < full_spend, f"the first day's spend {part_spend:.2f} is less than the whole range's {full_spend:.2f}")
        shown_part = dash.totals()
        check(
            all(money_equal(shown_part[t["currency"]]["spend"], t["spend"]) for t in part_totals),
            "the shown totals changed with the range",
        )
        dash.load_range("2026-10-01", "2026-10-07")
        check(dash.page.locator('[data-testid="campaign-row"]').count() == 0, "a range without data shows no campaign rows")
        check("No data" in dash.tid("perf-status").inner_text(), "a range without data says so")

        # --- 4. screenshots and the pipelines view ------------------------------------------
        compare_range(dash, base, admin, first, last, f"{first}..{last} again")
        page.screenshot(path=str(outdir / "performance.png"), full_page=True)
        dash.tid("tab-pipelines").click()
        page.wait_for_selector('[data-testid="pipelines-status"][data-state="ready"], [data-testid="pipelines-status"][data-state="error"], [data-testid="pipelines-status"][data-state="denied"]')
        check(dash.tid("pipelines-panel").is_visible(), f"admin: the pipelines panel shows ({dash.tid('pipelines-status').inner_text()})")
        check(dash.tid("pipelines-denied").is_hidden(), "admin: no 'cannot see pipelines' message")
        api_pipes = api_json(base, "/v1/pipelines", admin)
        meta_api = next((p for p in api_pipes["pipelines"] if p["name"] == "meta"), None)
        meta = page.locator('[data-testid="pipeline-meta"]')
        check(meta.count() == 1, "the meta pipeline is listed")
        field = lambda name: meta.locator(f'[data-field="{name}"]').get_attribute("data-value")
        version = field("adapter_version")
        check(
            bool(version),
            "meta: the adapter version is shown"
            + ("" if meta_api and meta_api.get("adapter_version") else " — GET /v1/pipelines has no `adapter_version` (the Rust side has not added it)"),
        )
        if meta_api and meta_api.get("adapter_version"):
            check(version == str(meta_api["adapter_version"]), f"meta: adapter version {version} = API {meta_api['adapter_version']}")
        today = field("rows_accepted_today")
        check(
            bool(today) and float(today) > 0,
            f"meta: rows accepted today > 0 (shown {today!r})"
            + ("" if meta_api and meta_api.get("rows_accepted_today") is not None else " — GET /v1/pipelines has no `rows_accepted_today` (the Rust side has not added it)"),
        )
        check(bool(field("last_accepted_at_ms")), "meta: the last accepted payload's time is shown")
        letters = int(field("dead_letters") or 0)
        check(letters >= 1, f"meta: the refused report is listed as a dead letter (shown {letters})")
        check("bus_lag_records" in api_pipes, "GET /v1/pipelines has bus_lag_records" )
        check(dash.tid("bus-lag").inner_text() != "–" or "bus_lag_records" not in api_pipes, "the bus lag is shown")
        page.locator('[data-testid="pipeline-meta"] details summary').first.click() if letters else None
        page.screenshot(path=str(outdir / "pipelines.png"), full_page=True)

        # --- 5. viewer ------------------------------------------------------------------------
        dash.sign_out()
        check(page.evaluate(f"() => sessionStorage.getItem('{TOKEN_KEY}')") is None, "sign out clears the token")
        dash.sign_in(viewer)
        dash.wait_signed_in()
        compare_range(dash, base, viewer, first, last, f"viewer {first}..{last}")
        dash.tid("tab-pipelines").click()
        try:
            dash.tid("pipelines-denied").wait_for(state="visible")
            text = dash.tid("pipelines-denied").inner_text()
            check("viewer" in text and "cannot see pipelines" in text, f"viewer: the denial names the roles ({text!r})")
        except PlaywrightTimeout:
            check(False, "viewer: pipelines-denied is shown")
        check(dash.tid("pipelines-panel").is_hidden(), "viewer: no pipelines panel")
        check(page.locator('[data-testid="pipeline-meta"]').count() == 0, "viewer: no pipeline is listed")

        # --- 6. a wrong token -----------------------------------------------------------------
        dash.sign_out()
        dash.sign_in("not-a-token")
        try:
            dash.tid("signin-error").wait_for(state="visible")
            text = dash.tid("signin-error").inner_text()
            check("401" in text and "refused" in text, f"a wrong token: the error mentions 401 ({text!r})")
        except PlaywrightTimeout:
            check(False, "a wrong token: signin-error is shown")
        check(page.evaluate("() => document.body.dataset.signedIn") is None, "a wrong token does not sign in")
        check(page.evaluate(f"() => sessionStorage.getItem('{TOKEN_KEY}')") is None, "a wrong token is not kept")
        page.screenshot(path=str(outdir / "signin-refused.png"))

        browser.close()

    check(not page_errors, "no page errors or CSP violations: " + "; ".join(page_errors[:5]))
    check(not foreign, "no request leaves the server's origin: " + ", ".join(foreign[:5]))
    return 0


if __name__ == "__main__":
    started = time.time()
    try:
        code = main()
    except Failure as e:
        failures.append(str(e))
        print(f"FAIL: {e}", flush=True)
        code = 1
    except PlaywrightTimeout as e:
        failures.append(f"timed out: {e}")
        print(f"FAIL: timed out: {str(e).splitlines()[0]}", flush=True)
        code = 1
    if code == 2:
        sys.exit(2)
    took = time.time() - started
    if failures:
        print(f"dashboard test: {len(failures)} of {len(failures) + len(passed)} checks failed ({took:.1f} s); first: {failures[0]}")
        sys.exit(1)
    print(f"dashboard test: all {len(passed)} checks passed in {took:.1f} s (screenshots in {sys.argv[5]})")
