"""A small consumer of adpipe's API through a client generated from /openapi.json
by openapi-python-client (scripts/api-consumer generates it as `adpipe_client`).

Usage: api_consumer.py BASE_URL TOKEN META_FIXTURES_DIR

It does what a dashboard's backend does and fails on the first surprise:
pushes Meta report pages, lists the tenant's metrics and asks for every one,
pages through insights with cursors (every row exactly once, totals equal to
the sums of the pushed pages and to the one-page answer), revalidates with
If-None-Match (304), and spends its read budget until a 429 names Retry-After.
"""

import datetime
import json
import sys
from decimal import Decimal
from pathlib import Path

from adpipe_client import AuthenticatedClient
from adpipe_client.api.ingestion import push_report
from adpipe_client.api.serving import campaigns, insights, metrics
from adpipe_client.models import (
    DimensionName,
    ErrorBody,
    GranularityName,
    InsightsAnswer,
    MetricList,
    PlatformPayloadType0,
)
from adpipe_client.types import UNSET

FROM, TO = datetime.date(2026, 11, 1), datetime.date(2026, 11, 30)


def check(condition, message):
    if not condition:
        sys.exit(f"api consumer: {message}")


def push(client, path):
    body = json.loads(path.read_text())
    answer = push_report.sync_detailed("meta", client=client, body=PlatformPayloadType0.from_dict(body))
    check(answer.status_code == 202, f"push {path.name}: {answer.status_code} {answer.content!r}")
    return body["data"]


def page_through(client, **query):
    """Every page of one insights query; returns (rows, totals of the pages)."""
    rows, cursor, totals = [], UNSET, set()
    while True:
        answer = insights.sync_detailed(client=client, from_=FROM, to=TO, cursor=cursor, **query)
        check(answer.status_code == 200, f"insights page: {answer.status_code} {answer.content!r}")
        page = answer.parsed
        check(isinstance(page, InsightsAnswer), f"insights page did not parse: {answer.content!r}")
        rows.extend(page.rows)
        totals.add(page.total)
        if not page.next_cursor:
            return rows, totals
        cursor = page.next_cursor


def main():
    base, token, fixtures = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    client = AuthenticatedClient(base_url=base, token=token, raise_on_unexpected_status=True)

    pushed = push(client, fixtures / "insights_ad_page1.json") + push(
        client, fixtures / "insights_ad_page2.json"
    )
    expected_spend = sum(Decimal(r["spend"]) for r in pushed)
    expected_impressions = sum(int(r["impressions"]) for r in pushed)
    ads = {r["ad_id"] for r in pushed}

    # Metric discovery: everything listed is accepted, with or without data.
    listed = metrics.sync_detailed(client=client)
    check(listed.status_code == 200 and isinstance(listed.parsed, MetricList), f"metrics: {listed.content!r}")
    names = [m.name for m in listed.parsed.metrics]
    for required in ("spend", "ctr", "leads"):
        check(required in names, f"/v1/metrics lacks {required}: {names}")
    units = {m.name: m.unit.value for m in listed.parsed.metrics}
    check(units["spend"] == "currency" and units["ctr"] == "fraction", f"units: {units}")
    every = insights.sync_detailed(client=client, from_=FROM, to=TO, granularity=GranularityName.TOTAL, metrics=names)
    check(every.status_code == 200, f"asking for every listed metric: {every.status_code} {every.content!r}")

    # Paging by ad, two rows a page: every row once, totals exact.
    rows, totals = page_through(client, group_by=[DimensionName.AD_ID], limit=2, metrics=["spend", "impressions"])
    keys = [(r.date, r.ad_id) for r in rows]
    check(len(keys) == len(set(keys)), f"a row came twice across pages: {keys}")
    check(totals == {len(rows)}, f"`total` {totals} is not the {len(rows)} rows paged")
    check({r.ad_id for r in rows} == ads, f"ads paged {sorted({r.ad_id for r in rows})} != pushed {sorted(ads)}")
    spend = sum(Decimal(str(r.spend)) for r in rows)
    impressions = sum(r.impressions for r in rows)
    check(spend == expected_spend, f"paged spend {spend} != pushed {expected_spend}")
    check(impressions == expected_impressions, f"paged impressions {impressions} != {expected_impressions}")
    check(all(isinstance(r.ad_name, str) and r.ad_name for r in rows), "rows grouped by ad carry ad_name")

    # Names and filters on campaigns, paged the same way.
    listed = campaigns.sync_detailed(client=client, currency=["usd"], limit=1)
    check(listed.status_code == 200 and listed.parsed.total >= 1, f"campaigns: {listed.content!r}")
    check(listed.parsed.campaigns[0].name, "campaigns carry their names")

    # Revalidation: the ETag of an answer gives 304 while the data is unchanged.
    first = insights.sync_detailed(client=client, from_=FROM, to=TO, granularity=GranularityName.TOTAL)
    etag = first.headers.get("etag")
    check(first.status_code == 200 and etag, "insights answers carry an ETag")
    again = insights.sync_detailed(
        client=client, from_=FROM, to=TO, granularity=GranularityName.TOTAL, if_none_match=etag
    )
    check(again.status_code == 304, f"If-None-Match with the ETag: {again.status_code}")

    # A typed error: 400 with the error envelope.
    bad = insights.sync_detailed(client=client, from_=TO, to=FROM)
    check(bad.status_code == 400 and isinstance(bad.parsed, ErrorBody), f"to before from: {bad.content!r}")
    check(bad.parsed.error.code == "invalid_parameter", f"code: {bad.parsed.error.code}")

    # Spend the read budget: a 429 with Retry-After and the envelope.
    for _ in range(5000):
        answer = metrics.sync_detailed(client=client)
        if answer.status_code == 429:
            check(int(answer.headers["retry-after"]) >= 1, "429 carries Retry-After")
            check(isinstance(answer.parsed, ErrorBody) and answer.parsed.error.code == "rate_limited", "429 envelope")
            break
        check(answer.status_code == 200, f"metrics while spending the budget: {answer.status_code}")
    else:
        sys.exit("api consumer: 5000 reads never met the rate limit")
    print(f"api consumer: {len(rows)} rows over cursors, spend {spend}, {len(names)} metrics, 304 and 429 handled")


if __name__ == "__main__":
    main()
