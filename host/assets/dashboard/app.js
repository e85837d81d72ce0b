// adpipe's built-in dashboard: plain ES2020, no build step, no third-party code but uPlot.
// The token the user pastes is kept in sessionStorage and sent only to this origin's API.
"use strict";

(() => {
  const TOKEN_KEY = "adpipe.dashboard.token";
  const BASE_METRICS = ["spend", "impressions", "clicks", "conversions", "conversion_value"];
  const RATIO_METRICS = ["ctr", "cpc", "cpm", "cpa", "cvr", "roas"];
  // Units of the built-in metrics, used until /v1/metrics answers.
  const DEFAULT_UNITS = {
    spend: "currency", impressions: "count", clicks: "count", conversions: "count",
    conversion_value: "currency", ctr: "fraction", cpc: "currency", cpm: "currency",
    cpa: "currency", cvr: "fraction", roas: "ratio",
  };
  const DEFAULT_TITLES = {
    spend: "Spend", impressions: "Impressions", clicks: "Clicks", conversions: "Conversions",
    conversion_value: "Conversion value", ctr: "CTR", cpc: "CPC", cpm: "CPM", cpa: "CPA",
    cvr: "CVR", roas: "ROAS",
  };
  const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2"];

  const $ = (id) => document.getElementById(id);
  const state = {
    token: null,
    whoami: null,
    catalog: [], // /v1/metrics
    tab: "performance",
    sort: { key: "spend", dir: -1 },
    tables: [], // [{currency, rows, extras}] of the last load
    charts: [], // uPlot instances
    loadSeq: 0,
  };

  // ---------------------------------------------------------------- API

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(path, token = state.token) {
    let res;
    try {
      res = await fetch(path, {
        headers: { Authorization: `Bearer ${token}`, Accept: "application/json" },
        cache: "no-store",
        credentials: "omit",
      });
    } catch (e) {
      throw new ApiError(0, "network", `the server could not be reached (${e.message})`);
    }
    let body = null;
    try {
      body = await res.json();
    } catch (_) {
      body = null;
    }
    if (!res.ok) {
      const err = body && body.error ? body.error : {};
      throw new ApiError(res.status, err.code || "http_" + res.status, err.message || res.statusText || "request failed");
    }
    return body;
  }

  function query(params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) {
      if (v !== undefined && v !== null && v !== "") q.set(k, v);
    }
    return q.toString();
  }

  // Every page of an insights answer (follows next_cursor).
  async function insightsAll(params) {
    const rows = [];
    let cursor = null;
    for (let page = 0; page < 1000; page++) {
      const body = await api("/v1/insights?" + query({ ...params, cursor }));
      rows.push(...(body.rows || []));
      cursor = body.next_cursor;
      if (!cursor) return rows;
    }
    throw new ApiError(0, "too_many_pages", "the answer has too many pages");
  }

  async function campaignsAll() {
    const out = [];
    let cursor = null;
    for (let page = 0; page < 100; page++) {
      const body = await api("/v1/campaigns?" + query({ cursor }));
      out.push(...(body.campaigns || []));
      cursor = body.next_cursor;
      if (!cursor) break;
    }
    return out;
  }

  // ---------------------------------------------------------------- helpers

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  const show = (node, visible) => node.classList.toggle("hidden", !visible);

  function isoDate(d) {
    const p = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`;
  }

  function metricInfo(name) {
    const m = state.catalog.find((c) => c.name === name);
    return {
      name,
      title: (m && m.title) || DEFAULT_TITLES[name] || name,
      unit: name === "roas" ? "ratio" : (m && m.unit) || DEFAULT_UNITS[name] || "count",
    };
  }

  function formatter(unit, currency) {
    if (unit === "currency") {
      try {
        const f = new Intl.NumberFormat(undefined, { style: "currency", currency, minimumFractionDigits: 2, maximumFractionDigits: 2 });
        return (v) => f.format(v);
      } catch (_) {
        const f = new Intl.NumberFormat(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
        return (v) => `${f.format(v)} ${currency}`;
      }
    }
    if (unit === "fraction") {
      const f = new Intl.NumberFormat(undefined, { style: "percent", minimumFractionDigits: 2, maximumFractionDigits: 2 });
      return (v) => f.format(v);
    }
    if (unit === "ratio") {
      const f = new Intl.NumberFormat(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
      return (v) => `${f.format(v)}×`;
    }
    const f = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });
    return (v) => f.format(v);
  }

  function fmt(value, unit, currency) {
    if (value === null || value === undefined || Number.isNaN(value)) return "–";
    return formatter(unit, currency)(Number(value));
  }

  function roles() {
    return (state.whoami && state.whoami.roles) || [];
  }

  // ---------------------------------------------------------------- sign in / out

  async function signIn(token, fromForm) {
    const error = $("signin-error");
    show(error, false);
    try {
      const who = await api("/v1/whoami", token);
      state.token = token;
      state.whoami = who;
      sessionStorage.setItem(TOKEN_KEY, token);
    } catch (e) {
      sessionStorage.removeItem(TOKEN_KEY);
      if (!fromForm && e.status === 401) return; // a stored token that expired: just ask again
      error.textContent =
        e.status === 401
          ? `This token was refused (401): ${e.message}`
          : `Sign-in failed (${e.status || "no answer"}): ${e.message}`;
      error.dataset.status = String(e.status);
      show(error, true);
      return;
    }
    $("signin-token").value = "";
    $("who-text").textContent = `${state.whoami.sub} · tenant ${state.whoami.tenant} · ${roles().join(", ")}`;
    show($("signin"), false);
    show($("tabs"), true);
    show($("who"), true);
    document.body.dataset.signedIn = "true";
    try {
      const m = await api("/v1/metrics");
      state.catalog = m.metrics || [];
    } catch (e) {
      state.catalog = [];
    }
    fillExtraMetrics();
    fillFilterLists();
    selectTab("performance");
    loadPerformance();
  }

  function signOut(message) {
    state.token = null;
    state.whoami = null;
    state.catalog = [];
    state.tables = [];
    sessionStorage.removeItem(TOKEN_KEY);
    destroyCharts();
    $("currencies").replaceChildren();
    $("pipelines-list").replaceChildren();
    $("extra-metrics").replaceChildren();
    for (const id of ["dl-platform", "dl-account", "dl-campaign", "dl-currency"]) $(id).replaceChildren();
    for (const id of ["f-platform", "f-account", "f-campaign", "f-currency"]) $(id).value = "";
    setStatus($("perf-status"), "idle", "");
    setStatus($("pipelines-status"), "idle", "");
    show($("pipelines-denied"), false);
    show($("pipelines-panel"), false);
    show($("performance"), false);
    show($("pipelines"), false);
    show($("tabs"), false);
    show($("who"), false);
    show($("signin"), true);
    delete document.body.dataset.signedIn;
    const error = $("signin-error");
    if (message) {
      error.textContent = message;
      show(error, true);
    } else {
      show(error, false);
    }
  }

  // A 401 after signing in (expired or revoked token): back to the form.
  function handleAuthError(e) {
    if (e.status === 401) {
      signOut(`This token was refused (401): ${e.message}`);
      return true;
    }
    return false;
  }

  // ---------------------------------------------------------------- tabs

  function selectTab(tab) {
    state.tab = tab;
    for (const b of document.querySelectorAll(".tab")) b.classList.toggle("active", b.dataset.tab === tab);
    show($("performance"), tab === "performance");
    show($("pipelines"), tab === "pipelines");
    if (tab === "pipelines") loadPipelines();
    if (tab === "performance") resizeCharts();
  }

  function setStatus(node, kind, text) {
    node.dataset.state = kind;
    node.textContent = text;
    node.classList.toggle("error", kind === "error");
  }

  // ---------------------------------------------------------------- performance

  function fillExtraMetrics() {
    const select = $("extra-metrics");
    select.replaceChildren();
    const extras = state.catalog.filter((m) => m.kind === "plugin" || m.kind === "extra");
    for (const m of extras) {
      const label = m.title && m.title !== m.name ? `${m.title} (${m.name})` : m.name;
      select.append(el("option", { value: m.name, title: m.description || "", text: label }));
    }
    select.disabled = extras.length === 0;
  }

  async function fillFilterLists() {
    let campaigns = [];
    try {
      campaigns = await campaignsAll();
    } catch (e) {
      if (handleAuthError(e)) return;
      return; // the lists are a convenience only
    }
    const fill = (id, values) => {
      const list = $(id);
      list.replaceChildren();
      for (const [value, label] of values) list.append(el("option", { value, label }));
    };
    const uniq = (f) => [...new Map(campaigns.map((c) => f(c)).filter((x) => x[0])).entries()].sort();
    fill("dl-platform", uniq((c) => [c.platform, c.platform]));
    fill("dl-account", uniq((c) => [c.account_id, `${c.platform} account`]));
    fill("dl-campaign", uniq((c) => [c.campaign_id, c.name || c.campaign_name || c.campaign_id]));
    fill("dl-currency", uniq((c) => [c.currency, c.currency]));
  }

  function filterParams() {
    const list = (id) =>
      $(id)
        .value.split(",")
        .map((s) => s.trim())
        .filter(Boolean)
        .join(",");
    return {
      platform: list("f-platform"),
      account_id: list("f-account"),
      campaign_id: list("f-campaign"),
      currency: list("f-currency").toUpperCase(),
    };
  }

  function selectedExtras() {
    return [...$("extra-metrics").selectedOptions].map((o) => o.value);
  }

  async function loadPerformance() {
    const seq = ++state.loadSeq;
    const status = $("perf-status");
    const from = $("from").value;
    const to = $("to").value;
    const granularity = $("granularity").value;
    if (!from || !to) {
      setStatus(status, "error", "Choose a date range.");
      return;
    }
    const filters = filterParams();
    const extras = selectedExtras();
    const tableMetrics = [...BASE_METRICS, ...RATIO_METRICS, ...extras].join(",");
    const chartMetrics = [...BASE_METRICS, ...RATIO_METRICS].join(",");
    setStatus(status, "loading", "Loading…");
    const perf = $("performance");
    delete perf.dataset.loaded; // what is shown is no longer the answer for a range
    perf.dataset.from = from;
    perf.dataset.to = to;
    let series, byCampaign, totals;
    try {
      [series, byCampaign, totals] = await Promise.all([
        insightsAll({ from, to, granularity, metrics: chartMetrics, ...filters }),
        insightsAll({ from, to, granularity: "total", group_by: "campaign_id", metrics: tableMetrics, ...filters }),
        insightsAll({ from, to, granularity: "total", metrics: tableMetrics, ...filters }),
      ]);
    } catch (e) {
      if (seq !== state.loadSeq) return;
      if (handleAuthError(e)) return;
      setStatus(status, "error", `Could not load insights (${e.status || "no answer"}): ${e.message}`);
      return;
    }
    if (seq !== state.loadSeq) return; // a newer load started meanwhile
    const currencies = [...new Set([...series, ...byCampaign, ...totals].map((r) => r.currency))].sort();
    destroyCharts();
    const root = $("currencies");
    root.replaceChildren();
    state.tables = [];
    for (const currency of currencies) {
      const section = el("section", { class: "currency card", "data-testid": `currency-${currency}`, "data-currency": currency });
      section.append(el("h2", { text: `${currency}` }));
      const total = totals.find((r) => r.currency === currency) || null;
      section.append(renderTotals(currency, total));
      const charts = el("div", { class: "charts" });
      section.append(charts);
      const tableWrap = el("div", { class: "table-wrap" });
      section.append(tableWrap);
      root.append(section);
      renderCharts(charts, currency, series.filter((r) => r.currency === currency), granularity);
      const entry = { currency, rows: byCampaign.filter((r) => r.currency === currency), extras, total, wrap: tableWrap };
      state.tables.push(entry);
      renderTable(entry);
    }
    const n = byCampaign.length;
    setStatus(
      status,
      "ready",
      currencies.length === 0
        ? `No data from ${from} to ${to}.`
        : `${from} to ${to}: ${n} campaign row${n === 1 ? "" : "s"} in ${currencies.join(", ")}.`,
    );
    perf.dataset.loaded = `${from}|${to}|${granularity}`;
  }

  function renderTotals(currency, total) {
    const box = el("div", { class: "totals", "data-testid": `totals-${currency}` });
    for (const name of [...BASE_METRICS, "ctr", "cpc", "cpa", "roas"]) {
      const info = metricInfo(name);
      const value = total ? total[name] : null;
      box.append(
        el(
          "div",
          { class: "kpi", "data-metric": name, "data-value": value ?? "" },
          el("span", { class: "kpi-title", text: info.title }),
          el("span", { class: "kpi-value", text: fmt(value, info.unit, currency) }),
        ),
      );
    }
    return box;
  }

  // ---------------------------------------------------------------- charts

  function destroyCharts() {
    for (const c of state.charts) c.plot.destroy();
    state.charts = [];
  }

  function resizeCharts() {
    for (const c of state.charts) {
      const w = chartWidth(c.host);
      if (w > 0 && w !== c.plot.width) c.plot.setSize({ width: w, height: c.plot.height });
    }
  }

  function chartWidth(host) {
    const w = host.clientWidth || (host.parentElement && host.parentElement.clientWidth) || 600;
    return Math.max(240, Math.floor(w));
  }

  function renderCharts(container, currency, rows, granularity) {
    if (typeof uPlot === "undefined") {
      container.append(el("p", { class: "error", text: "The chart library did not load." }));
      return;
    }
    const dates = [...new Set(rows.map((r) => r.date))].filter(Boolean).sort();
    const byDate = new Map(rows.map((r) => [r.date, r]));
    const xs = dates.map((d) => Date.parse(d + "T00:00:00Z") / 1000);
    const col = (name) => dates.map((d) => {
      const v = byDate.get(d)[name];
      return v === null || v === undefined ? null : Number(v);
    });
    const groups = [
      { id: "money", title: `Spend and conversion value (${currency})`, left: ["spend", "conversion_value"], right: [] },
      { id: "volume", title: "Impressions, clicks and conversions", left: ["impressions"], right: ["clicks", "conversions"] },
      { id: "costs", title: `CPM, CPA and CPC (${currency})`, left: ["cpm", "cpa"], right: ["cpc"] },
      { id: "rates", title: "CTR, CVR and ROAS", left: ["ctr", "cvr"], right: ["roas"] },
    ];
    for (const g of groups) {
      const box = el("figure", { class: "chart", "data-testid": `chart-${currency}-${g.id}` });
      box.append(el("figcaption", { text: g.title }));
      const host = el("div", { class: "chart-host" });
      box.append(host);
      container.append(box);
      if (dates.length === 0) {
        host.append(el("p", { class: "muted", text: "No data in this range." }));
        continue;
      }
      const names = [...g.left, ...g.right];
      const leftUnit = metricInfo(g.left[0]).unit;
      const rightUnit = g.right.length ? metricInfo(g.right[0]).unit : null;
      const axisValues = (unit) => (u, ticks) => ticks.map((t) => (t === null ? "" : shortNumber(t, unit)));
      const day = 86400;
      const opts = {
        width: chartWidth(host),
        height: 220,
        // Buckets are UTC days: draw and label them so, whatever the browser's zone.
        tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
        cursor: { drag: { x: true, y: false } },
        scales: {
          x: { time: true, range: (u, min, max) => (min === max ? [min - day, max + day] : [min, max]) },
          l: { auto: true },
          r: { auto: true },
        },
        axes: [
          {
            space: 70,
            incrs: [day, 2 * day, 7 * day, 14 * day, 28 * day, 91 * day, 182 * day, 364 * day],
            values: (u, ticks) => ticks.map((t) => shortDate(t, granularity)),
          },
          { scale: "l", values: axisValues(leftUnit), size: 64 },
          ...(rightUnit ? [{ scale: "r", side: 1, values: axisValues(rightUnit), grid: { show: false }, size: 64 }] : []),
        ],
        series: [
          {
            label: granularity === "day" ? "Day" : granularity === "week" ? "Week from" : "Month",
            value: (u, v) => (v === null || v === undefined ? "–" : new Date(v * 1000).toISOString().slice(0, 10)),
          },
          ...names.map((name, i) => {
            const info = metricInfo(name);
            return {
              label: info.title + (g.right.includes(name) ? " (right)" : ""),
              scale: g.right.includes(name) ? "r" : "l",
              stroke: COLORS[i % COLORS.length],
              width: 2,
              points: { show: dates.length < 60 },
              spanGaps: false,
              value: (u, v) => fmt(v, info.unit, currency),
            };
          }),
        ],
      };
      const plot = new uPlot(opts, [xs, ...names.map(col)], host);
      state.charts.push({ plot, host });
    }
  }

  function shortDate(ts, granularity) {
    const iso = new Date(ts * 1000).toISOString();
    return granularity === "month" ? iso.slice(0, 7) : iso.slice(5, 10);
  }

  function shortNumber(v, unit) {
    if (unit === "fraction") return `${(v * 100).toFixed(Math.abs(v) < 0.1 ? 2 : 1)}%`;
    if (unit === "ratio") return `${v.toFixed(2)}×`;
    const a = Math.abs(v);
    if (a >= 1e9) return `${(v / 1e9).toFixed(1)}B`;
    if (a >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
    if (a >= 1e4) return `${(v / 1e3).toFixed(0)}k`;
    if (a >= 1e3) return `${(v / 1e3).toFixed(1)}k`;
    return unit === "currency" ? v.toFixed(2) : String(Math.round(v * 100) / 100);
  }

  // ---------------------------------------------------------------- campaign table

  function campaignLabel(r) {
    return r.campaign_name || r.campaign_id || "(no campaign)";
  }

  function sortRows(rows) {
    const { key, dir } = state.sort;
    const val = (r) => (key === "campaign" ? campaignLabel(r).toLowerCase() : key === "platform" ? r.platform || "" : r[key]);
    return [...rows].sort((a, b) => {
      const x = val(a);
      const y = val(b);
      const xn = x === null || x === undefined;
      const yn = y === null || y === undefined;
      if (xn || yn) return xn && yn ? 0 : xn ? 1 : -1; // nulls last, either direction
      if (typeof x === "string" || typeof y === "string") return dir * String(x).localeCompare(String(y));
      return dir * (x - y);
    });
  }

  function renderTable(entry) {
    const { currency, rows, extras, total, wrap } = entry;
    const metrics = [...BASE_METRICS, ...RATIO_METRICS, ...extras];
    const columns = [
      { key: "campaign", title: "Campaign", numeric: false },
      { key: "platform", title: "Platform", numeric: false },
      // Short headers for the built-in metrics (CTR, CPC…), the catalog's title as a tooltip.
      ...metrics.map((m) => ({ key: m, title: DEFAULT_TITLES[m] || metricInfo(m).title, full: metricInfo(m).title, numeric: true })),
    ];
    const table = el("table", { class: "campaigns", "data-testid": `campaign-table-${currency}`, "data-currency": currency });
    const headRow = el("tr");
    for (const c of columns) {
      const sorted = state.sort.key === c.key;
      const th = el(
        "th",
        {
          class: (c.numeric ? "num " : "") + "sortable" + (sorted ? (state.sort.dir > 0 ? " asc" : " desc") : ""),
          "data-sort": c.key,
          "data-testid": `sort-${c.key}`,
          "aria-sort": sorted ? (state.sort.dir > 0 ? "ascending" : "descending") : "none",
          scope: "col",
          tabindex: "0",
          title: `${c.full || c.title}: click to sort`,
        },
        c.title,
      );
      const activate = () => {
        if (state.sort.key === c.key) state.sort.dir = -state.sort.dir;
        else state.sort = { key: c.key, dir: c.numeric ? -1 : 1 };
        for (const t of state.tables) renderTable(t);
      };
      th.addEventListener("click", activate);
      th.addEventListener("keydown", (ev) => {
        if (ev.key === "Enter" || ev.key === " ") {
          ev.preventDefault();
          activate();
        }
      });
      headRow.append(th);
    }
    table.append(el("thead", {}, headRow));
    const body = el("tbody");
    for (const r of sortRows(rows)) {
      const tr = el("tr", { "data-testid": "campaign-row", "data-campaign-id": r.campaign_id ?? "", "data-platform": r.platform ?? "" });
      tr.append(
        el(
          "td",
          { class: "campaign", "data-field": "campaign" },
          el("span", { class: "name", "data-field": "campaign-name", text: campaignLabel(r) }),
          r.campaign_name ? el("span", { class: "id muted", text: r.campaign_id }) : null,
        ),
      );
      tr.append(el("td", { "data-field": "platform", text: r.platform || "" }));
      for (const m of metrics) {
        const info = metricInfo(m);
        const v = r[m];
        tr.append(el("td", { class: "num", "data-metric": m, "data-value": v ?? "", text: fmt(v, info.unit, currency) }));
      }
      body.append(tr);
    }
    if (rows.length === 0) {
      body.append(el("tr", {}, el("td", { colspan: columns.length, class: "muted", text: "No campaigns in this range." })));
    }
    table.append(body);
    if (total) {
      const tr = el("tr", { "data-testid": "campaign-total" });
      tr.append(el("th", { scope: "row", text: "Total" }), el("td"));
      for (const m of metrics) {
        const info = metricInfo(m);
        const v = total[m];
        tr.append(el("td", { class: "num", "data-metric": m, "data-value": v ?? "", text: fmt(v, info.unit, currency) }));
      }
      table.append(el("tfoot", {}, tr));
    }
    wrap.replaceChildren(table);
  }

  // ---------------------------------------------------------------- pipelines

  function fmtTime(ms) {
    if (ms === null || ms === undefined) return "–";
    const d = new Date(Number(ms));
    return Number.isNaN(d.getTime()) ? "–" : d.toLocaleString();
  }

  function describe(value) {
    if (value === null || value === undefined) return "–";
    if (typeof value !== "object") return String(value);
    if (Array.isArray(value)) return value.map(describe).join(", ");
    return Object.entries(value)
      .filter(([, v]) => v !== null && v !== undefined && !(Array.isArray(v) && v.length === 0))
      .map(([k, v]) => `${k}: ${typeof v === "object" ? describe(v) : v}`)
      .join(" · ");
  }

  function describePull(pull) {
    if (!pull) return "no scheduled pulls";
    const parts = [];
    if (pull.every) parts.push(`every ${pull.every}`);
    if (pull.every_s) parts.push(`every ${duration(pull.every_s)}`);
    if (pull.accounts) parts.push(`accounts ${[].concat(pull.accounts).join(", ")}`);
    if (pull.lookback_days !== undefined && pull.lookback_days !== null) parts.push(`lookback ${pull.lookback_days} d`);
    if (pull.next_at_ms) parts.push(`next ${fmtTime(pull.next_at_ms)}`);
    const known = new Set(["every", "every_s", "accounts", "lookback_days", "next_at_ms"]);
    const rest = Object.fromEntries(Object.entries(pull).filter(([k]) => !known.has(k)));
    const more = describe(rest);
    if (more && more !== "–") parts.push(more);
    return parts.join(" · ") || "configured";
  }

  function duration(s) {
    if (s % 86400 === 0) return `${s / 86400} d`;
    if (s % 3600 === 0) return `${s / 3600} h`;
    if (s % 60 === 0) return `${s / 60} min`;
    return `${s} s`;
  }

  function describeLastPull(run) {
    if (!run) return "none yet";
    const parts = [];
    if (run.status) parts.push(run.status);
    if (run.account) parts.push(`account ${run.account}`);
    if (run.since || run.until) parts.push(`${run.since || "?"} to ${run.until || "?"}`);
    if (run.rows !== undefined) parts.push(`${run.rows} rows`);
    if (run.pages !== undefined) parts.push(`${run.pages} pages`);
    if (run.retries) parts.push(`${run.retries} retries`);
    if (run.finished_at_ms) parts.push(`at ${fmtTime(run.finished_at_ms)}`);
    if (run.error) parts.push(`error: ${run.error}`);
    return parts.join(" · ");
  }

  function describeBreaker(b) {
    if (!b) return "–";
    let s = b.state || "–";
    if (b.consecutive_failures) s += ` · ${b.consecutive_failures} failures in a row`;
    if (b.retry_after_s) s += ` · retry in ${b.retry_after_s} s`;
    return s;
  }

  async function loadPipelines() {
    if (!state.token) return;
    const status = $("pipelines-status");
    const denied = $("pipelines-denied");
    const panel = $("pipelines-panel");
    setStatus(status, "loading", "Loading…");
    let body;
    try {
      body = await api("/v1/pipelines");
    } catch (e) {
      if (handleAuthError(e)) return;
      if (e.status === 403) {
        denied.textContent = `Your roles (${roles().join(", ") || "none"}) cannot see pipelines: ${e.message}`;
        show(denied, true);
        show(panel, false);
        $("pipelines-list").replaceChildren();
        setStatus(status, "denied", "");
        return;
      }
      show(panel, false);
      setStatus(status, "error", `Could not load pipelines (${e.status || "no answer"}): ${e.message}`);
      return;
    }
    show(denied, false);
    let letters = [];
    const note = $("dead-letters-note");
    show(note, false);
    try {
      letters = (await api("/v1/dead-letters?limit=1000")).dead_letters || [];
    } catch (e) {
      if (handleAuthError(e)) return;
      note.textContent = `Dead letters are not shown (${e.status}): ${e.message}`;
      show(note, true);
    }
    const lag = body.bus_lag_records;
    $("bus-lag").textContent = lag === null || lag === undefined ? "–" : String(lag);
    $("bus-lag").dataset.value = lag ?? "";
    const list = $("pipelines-list");
    list.replaceChildren();
    for (const p of body.pipelines || []) list.append(renderPipeline(p, letters.filter((d) => d.pipeline === p.name)));
    if (!(body.pipelines || []).length) list.append(el("p", { class: "muted", text: "This tenant has no pipelines." }));
    show(panel, true);
    setStatus(status, "ready", `Updated ${new Date().toLocaleTimeString()}`);
  }

  function renderPipeline(p, letters) {
    const card = el("article", { class: "pipeline card", "data-testid": `pipeline-${p.name}`, "data-pipeline": p.name });
    card.append(el("h3", {}, p.name, el("span", { class: `badge breaker-${(p.breaker && p.breaker.state) || "unknown"}`, text: `breaker ${(p.breaker && p.breaker.state) || "?"}` })));
    const fields = [
      ["adapter", "Adapter", p.adapter],
      ["adapter_version", "Adapter version", p.adapter_version],
      ["adapter_state", "Adapter state", describe(p.adapter_state)],
      ["platform", "Platform", p.platform],
      ["rows_accepted_today", "Rows accepted today", p.rows_accepted_today],
      ["last_accepted_at_ms", "Last accepted payload", fmtTime(p.last_accepted_at_ms)],
      ["breaker", "Breaker", describeBreaker(p.breaker)],
      ["pull", "Pull schedule", describePull(p.pull)],
      ["last_pull", "Last pull", describeLastPull(p.last_pull)],
      ["dead_letters", "Dead letters", String(letters.length)],
    ];
    const dl = el("dl", { class: "fields" });
    for (const [key, label, shown] of fields) {
      const raw = key === "dead_letters" ? letters.length : p[key];
      dl.append(
        el("dt", { text: label }),
        el("dd", {
          "data-field": key,
          "data-value": raw === null || raw === undefined ? "" : typeof raw === "object" ? JSON.stringify(raw) : String(raw),
          text: shown === null || shown === undefined || shown === "" ? "–" : String(shown),
        }),
      );
    }
    card.append(dl);
    if (letters.length) {
      const table = el("table", { class: "letters", "data-testid": `dead-letters-${p.name}` });
      table.append(el("thead", {}, el("tr", {}, ...["Received", "Code", "Reason", "Source", "Bytes", "Retried"].map((t) => el("th", { scope: "col", text: t })))));
      const tbody = el("tbody");
      for (const d of letters) {
        tbody.append(
          el(
            "tr",
            { "data-testid": "dead-letter", "data-id": d.id },
            el("td", { text: fmtTime(d.received_at_ms) }),
            el("td", { text: d.code }),
            el("td", { class: "reason", text: d.message }),
            el("td", { text: d.source }),
            el("td", { class: "num", text: d.size }),
            el("td", { text: d.retried_at_ms ? fmtTime(d.retried_at_ms) : "no" }),
          ),
        );
      }
      table.append(tbody);
      card.append(el("details", {}, el("summary", { text: `${letters.length} dead letter${letters.length === 1 ? "" : "s"}` }), table));
    }
    return card;
  }

  // ---------------------------------------------------------------- wiring

  function init() {
    const today = new Date();
    const start = new Date(today);
    start.setDate(start.getDate() - 29);
    $("from").value = isoDate(start);
    $("to").value = isoDate(today);

    $("signin-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const token = $("signin-token").value.trim();
      if (token) signIn(token, true);
    });
    $("signout").addEventListener("click", () => signOut());
    $("filters").addEventListener("submit", (ev) => {
      ev.preventDefault();
      loadPerformance();
    });
    for (const b of document.querySelectorAll(".tab")) b.addEventListener("click", () => selectTab(b.dataset.tab));
    $("pipelines-refresh").addEventListener("click", () => loadPipelines());
    let resizeTimer = null;
    window.addEventListener("resize", () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(resizeCharts, 150);
    });

    const stored = sessionStorage.getItem(TOKEN_KEY);
    if (stored) signIn(stored, false);
    document.body.dataset.ready = "true";
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
