// otto test run report: filters for the test list, and (with --monitor) one uPlot chart
// per metric, a line per host, each test's span shaded on the timeline. Everything the
// page needs is inlined; it fetches nothing.
"use strict";

(function () {
  const SPAN_COLORS = { passed: "#2b8a3e", failed: "#c92a2a", error: "#d9480f", skipped: "#868e96" };
  const EVENT_COLOR = "#7048e8";
  const PALETTE = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
    "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
  ];
  const report = { ready: false, charts: {}, spansDrawn: 0 };
  window.ottoReport = report;

  const dataEl = document.getElementById("report-data");
  const data = dataEl ? JSON.parse(dataEl.textContent) : { charts: [], spans: [], events: [] };
  const spans = data.spans.slice().sort((a, b) => a.t0 - b.t0);

  // ------------------------------------------------------------------ test list

  function setupFilters() {
    const buttons = [...document.querySelectorAll(".filters button")];
    const search = document.getElementById("search");
    const tests = [...document.querySelectorAll("details.test")];
    let filter = "all";
    const apply = () => {
      const text = search ? search.value.trim().toLowerCase() : "";
      for (const el of tests) {
        const kinds = el.dataset.kinds.split(" ");
        const byKind = filter === "all" || kinds.includes(filter);
        const byText = !text || el.dataset.nodeid.toLowerCase().includes(text);
        el.hidden = !(byKind && byText);
      }
    };
    for (const button of buttons) {
      button.addEventListener("click", () => {
        filter = button.dataset.filter;
        for (const other of buttons) other.setAttribute("aria-pressed", String(other === button));
        apply();
      });
    }
    if (search) search.addEventListener("input", apply);
  }

  function reveal(anchor) {
    const target = document.getElementById(anchor);
    if (!target) return;
    const test = target.closest("details.test");
    if (test) {
      test.hidden = false;
      test.open = true;
    }
    target.scrollIntoView({ block: "start" });
    history.replaceState(null, "", `#${anchor}`);
  }

  // ------------------------------------------------------------------ formatting

  const BYTE_UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];

  function trim(s) {
    return s.includes(".") ? s.replace(/\.?0+$/, "") : s;
  }

  function fmt(unit, v) {
    if (v == null || !Number.isFinite(v)) return "–";
    if (unit === "B" || unit === "B/s") {
      let i = 0;
      while (Math.abs(v) >= 1024 && i < BYTE_UNITS.length - 1) {
        v /= 1024;
        i += 1;
      }
      const digits = i === 0 || Math.abs(v) >= 100 ? 0 : 1;
      return `${trim(v.toFixed(digits))} ${BYTE_UNITS[i]}${unit === "B/s" ? "/s" : ""}`;
    }
    if (unit === "%") return `${trim(v.toFixed(Math.abs(v) >= 10 ? 0 : 1))}%`;
    const a = Math.abs(v);
    if (a >= 1e6) return `${trim((v / 1e6).toFixed(1))}M`;
    if (a >= 1e4) return `${trim((v / 1e3).toFixed(1))}k`;
    return trim(v.toFixed(a >= 100 ? 0 : 2));
  }

  function fmtTime(t, ms = false) {
    return new Date(t * 1000).toISOString().slice(11, ms ? 23 : 19);
  }

  // The time range of a chart: its samples and every test's span, so that a run shorter
  // than the sampling interval still shows its tests; at least a second wide.
  function xRange(u, lo, hi) {
    if (spans.length) {
      lo = Math.min(lo ?? Infinity, spans[0].t0);
      hi = Math.max(hi ?? -Infinity, ...spans.map((s) => s.t1));
    }
    if (hi - lo < 1) {
      const mid = (lo + hi) / 2;
      return [mid - 0.5, mid + 0.5];
    }
    const pad = (hi - lo) * 0.01;
    return [lo - pad, hi + pad];
  }

  function cssVar(name, fallback) {
    const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return v || fallback;
  }

  function colorOf(i) {
    return i < PALETTE.length ? PALETTE[i] : `hsl(${Math.round((i * 137.508) % 360)}, 55%, 48%)`;
  }

  // Spans (tests) running at time t.
  function spansAt(t) {
    const found = [];
    for (const s of spans) {
      if (s.t0 > t) break;
      if (s.t1 >= t) found.push(s);
    }
    return found;
  }

  // ------------------------------------------------------------------ charts

  function drawOverlay(u) {
    const min = u.scales.x.min;
    const max = u.scales.x.max;
    if (min == null || max == null) return 0;
    const ctx = u.ctx;
    const { left, top, width, height } = u.bbox;
    const dpr = uPlot.pxRatio;
    let drawn = 0;
    ctx.save();
    ctx.beginPath();
    ctx.rect(left, top, width, height);
    ctx.clip();
    ctx.font = `${11 * dpr}px system-ui, sans-serif`;
    ctx.textBaseline = "top";
    let lane = 0;
    for (const s of spans) {
      if (s.t1 < min || s.t0 > max) continue;
      const x0 = u.valToPos(s.t0, "x", true);
      const x1 = Math.max(u.valToPos(s.t1, "x", true), x0 + 2 * dpr);
      const color = SPAN_COLORS[s.outcome] || SPAN_COLORS.skipped;
      ctx.globalAlpha = s.outcome === "passed" ? 0.1 : 0.2;
      ctx.fillStyle = color;
      ctx.fillRect(x0, top, x1 - x0, height);
      ctx.globalAlpha = 0.9;
      ctx.fillRect(x0, top, Math.max(1, Math.round(1.5 * dpr)), height);
      const label = s.label;
      const w = ctx.measureText(label).width;
      if (x1 - x0 > w + 6 * dpr) {
        ctx.globalAlpha = 1;
        ctx.fillText(label, x0 + 4 * dpr, top + (3 + (lane % 2) * 14) * dpr);
        lane += 1;
      }
      drawn += 1;
    }
    ctx.globalAlpha = 1;
    for (const ev of data.events) {
      if (ev.t < min || ev.t > max) continue;
      const x = Math.round(u.valToPos(ev.t, "x", true)) + 0.5;
      ctx.strokeStyle = ev.color || EVENT_COLOR;
      ctx.lineWidth = 1.5 * dpr;
      ctx.setLineDash([4 * dpr, 3 * dpr]);
      ctx.beginPath();
      ctx.moveTo(x, top);
      ctx.lineTo(x, top + height);
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.fillStyle = ev.color || EVENT_COLOR;
      ctx.fillText(ev.label, x + 3 * dpr, top + height - 16 * dpr);
    }
    ctx.restore();
    return drawn;
  }

  function readout(chart, u) {
    const idx = u.cursor.idx;
    const out = chart.readout;
    if (idx == null || u.cursor.left < 0) {
      out.textContent = "";
      return;
    }
    const t = u.data[0][idx];
    const parts = [fmtTime(t) + " UTC"];
    chart.spec.hosts.forEach((host, i) => {
      if (chart.spec.hosts.length <= 6) parts.push(`${host} ${fmt(chart.spec.unit, u.data[i + 1][idx])}`);
    });
    const running = spansAt(t).map((s) => s.label);
    if (running.length) parts.push(`running: ${running.slice(0, 3).join(", ")}${running.length > 3 ? ", …" : ""}`);
    out.textContent = parts.join("  ·  ");
  }

  function createChart(spec, container) {
    const card = document.createElement("section");
    card.className = "card chart";
    card.dataset.metric = spec.metric;
    const head = document.createElement("header");
    const title = document.createElement("h3");
    title.textContent = spec.title;
    const name = document.createElement("code");
    name.className = "muted";
    name.textContent = spec.metric;
    const out = document.createElement("div");
    out.className = "readout";
    head.append(title, name, out);
    const hosts = document.createElement("div");
    hosts.className = "legend";
    spec.hosts.forEach((host, i) => {
      const item = document.createElement("span");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = colorOf(i);
      item.append(swatch, host);
      hosts.append(item);
    });
    const body = document.createElement("div");
    card.append(head, hosts, body);
    container.append(card);
    const chart = { spec, card, readout: out, u: null, markers: 0 };
    const axis = cssVar("--axis", "#555");
    const grid = cssVar("--grid", "#e6e6e6");
    const opts = {
      width: Math.max(320, Math.floor(body.clientWidth || 540)),
      height: 200,
      legend: { show: false },
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"),
      cursor: { sync: { key: "otto-report" }, drag: { x: true, y: false } },
      scales: {
        x: { time: true, range: xRange },
        y: {
          range: (u, lo, hi) => {
            if (lo == null || hi == null) return [0, spec.unit === "%" ? 100 : 1];
            let top = hi > 0 ? hi * 1.08 : 1;
            if (spec.unit === "%" && hi <= 100) top = Math.min(100, Math.max(top, 1));
            return [Math.min(0, lo), top];
          },
        },
      },
      series: [
        {},
        ...spec.hosts.map((host, i) => ({
          label: host,
          stroke: colorOf(i),
          width: 1.5,
          value: (u, v) => fmt(spec.unit, v),
        })),
      ],
      axes: [
        {
          stroke: axis,
          grid: { stroke: grid, width: 1 },
          ticks: { stroke: grid, width: 1 },
          space: 80,
          values: (u, splits) => {
            const fine = u.scales.x.max - u.scales.x.min < 10;
            return splits.map((t) => (fine ? fmtTime(t, true) : fmtTime(t).replace(/^(\d\d:\d\d):00$/, "$1")));
          },
        },
        {
          stroke: axis,
          grid: { stroke: grid, width: 1 },
          ticks: { stroke: grid, width: 1 },
          size: 70,
          values: (u, splits) => splits.map((v) => fmt(spec.unit, v)),
        },
      ],
      hooks: {
        draw: [(u) => {
          chart.markers = drawOverlay(u);
          report.spansDrawn = Math.max(report.spansDrawn, chart.markers);
        }],
        setCursor: [(u) => readout(chart, u)],
      },
    };
    chart.u = new uPlot(opts, spec.data, body);
    // uPlot sizes a one-point timeline on its own; the tests' spans set it here.
    const [min, max] = xRange(chart.u, spec.data[0][0], spec.data[0].at(-1));
    chart.u.setScale("x", { min, max });
    chart.u.over.addEventListener("click", () => {
      const idx = chart.u.cursor.idx;
      if (idx == null) return;
      const here = spansAt(chart.u.data[0][idx]);
      if (here.length) reveal(here[here.length - 1].anchor);
    });
    chart.u.over.addEventListener("dblclick", () => {
      for (const other of Object.values(report.charts)) {
        const [min, max] = xRange(other.u, other.spec.data[0][0], other.spec.data[0].at(-1));
        other.u.setScale("x", { min, max });
      }
    });
    report.charts[spec.metric] = chart;
    return chart;
  }

  function setupCharts() {
    if (!data.charts.length || typeof uPlot === "undefined") return;
    const main = document.getElementById("charts");
    const more = document.getElementById("more-charts");
    const later = [];
    for (const spec of data.charts) {
      if (spec.detail && more) later.push(spec);
      else createChart(spec, main);
    }
    const fold = document.getElementById("more");
    if (fold && later.length) {
      // Charts in the folded section need a width: they are built when it opens.
      fold.addEventListener("toggle", () => {
        if (fold.open && later.length) for (const spec of later.splice(0)) createChart(spec, more);
      });
    }
    const resize = new ResizeObserver(() => {
      for (const chart of Object.values(report.charts)) {
        const width = Math.max(320, Math.floor(chart.card.clientWidth - 28));
        if (Math.abs(chart.u.width - width) > 2) chart.u.setSize({ width, height: 200 });
      }
    });
    resize.observe(main);
  }

  setupFilters();
  setupCharts();
  if (location.hash.length > 1) reveal(decodeURIComponent(location.hash.slice(1)));
  report.ready = true;
})();
