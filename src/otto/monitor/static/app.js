// otto monitor: one uPlot chart per metric with a line per host, fed by /api/stream.
//
// The stream opens with a snapshot of the stored series, then carries every round and
// event. Rounds are appended to shared arrays; charts are redrawn at most once per
// animation frame, and only those on screen (the others when they scroll into view).
//
// Outages (a host down from its first down round to its first round up again) come
// with the snapshot and then follow from the rounds, by the same rule as the server's
// (otto.monitor.outages): bands on every chart, a banner of the hosts down now, and a
// health table over the shown time range.
"use strict";

(function () {
  const STREAM_URL = "api/stream";
  const EVENTS_URL = "api/events";
  const RUNS_URL = "api/runs";
  const MARKER_CHARS = 60;
  const SYNC_KEY = "otto-monitor";
  const CHART_HEIGHT = 220;
  // Points kept per line in a live session: the budget over all lines, within bounds.
  const POINT_BUDGET = 4000000;
  const MIN_KEEP = 3600;
  const STATS_KEEP = 2000;
  const DEFAULT_EVENT_COLOR = "#d9480f";
  const BANNER_HOSTS = 20; // hosts named in the banner; the rest are counted
  const HEALTH_EVERY_MS = 1000; // the health table is rebuilt at most this often

  // Charts of these come first, in this order; then other metrics by name. Metrics of
  // one device ("cpu.percent[cpu0]") go to a folded section below.
  const ORDER = [
    "cpu.percent",
    "load.1m",
    "load.5m",
    "load.15m",
    "mem.percent",
    "mem.used_bytes",
    "mem.total_bytes",
    "swap.percent",
    "swap.used_bytes",
    "swap.total_bytes",
    "net.rx_bytes_per_s",
    "net.tx_bytes_per_s",
    "disk.read_bytes_per_s",
    "disk.write_bytes_per_s",
    "disk.used_percent",
    "procs.running",
    "procs.total",
  ];
  const TITLES = {
    "cpu.percent": "CPU busy",
    "load.1m": "Load average, 1 min",
    "load.5m": "Load average, 5 min",
    "load.15m": "Load average, 15 min",
    "mem.percent": "Memory used (%)",
    "mem.used_bytes": "Memory used",
    "mem.total_bytes": "Memory total",
    "swap.percent": "Swap used (%)",
    "swap.used_bytes": "Swap used",
    "swap.total_bytes": "Swap total",
    "net.rx_bytes_per_s": "Network received",
    "net.tx_bytes_per_s": "Network sent",
    "disk.read_bytes_per_s": "Disk read",
    "disk.write_bytes_per_s": "Disk written",
    "disk.used_percent": "Disk used, root filesystem",
    "procs.running": "Processes running",
    "procs.total": "Processes",
  };
  const PALETTE = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
    "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
  ];

  const $ = (id) => document.getElementById(id);
  const chartsEl = $("charts");
  const moreEl = $("more-charts");

  const state = {
    live: true,
    interval: 0,
    hosts: [], // names, in series order
    hostIndex: new Map(), // name -> index in hosts
    hostState: new Map(), // name -> {up, error}
    hostItems: new Map(), // name -> {item, badge}: the legend's element of each host
    hidden: new Set(), // hosts toggled off in the legend
    xs: [], // the shared timeline, Unix seconds
    charts: new Map(), // metric -> chart
    events: new Map(), // id -> event
    eventList: [], // events sorted by time
    lastT: -Infinity,
    lastRound: null,
    zoomed: false,
    ended: false,
    keep: MIN_KEEP,
    stream: null,
    pick: null, // the run asked for (?run=), null for the source's own
    current: null, // the id of the run the source shows by itself (a live one)
    runs: [], // the runs of the database, from /api/runs
    run: null, // the run shown, from the snapshot
    outages: new Map(), // host -> its outages {host, start, end, error}, oldest first
    open: new Map(), // host -> its open outage (end null)
    nowBase: null, // the source's time at nowAt (snapshot "now", then each round's t)
    nowAt: 0, // performance.now() when nowBase was taken
    costs: new Map(), // host -> {rounds, seconds, received, processes, counted, last}
    lastError: new Map(), // host -> the latest error it reported
  };
  const stats = {
    rounds: 0,
    applyMs: [], // time to take one round into the arrays
    drawMs: [], // time of one frame's redraws (JS; rasterizing follows)
    updateMs: [], // one round: taken in, and every chart on screen redrawn
    healthMs: [], // one update of the health table
    snapshotMs: 0, // time to build the charts from the snapshot
    snapshotPoints: 0,
  };
  const otto = {
    ready: false,
    options: {
      // Line points redrawn per frame at most (at least one chart is): a chart of 50
      // lines an hour long takes tens of ms to rasterize, so a round's redraws are
      // spread over frames rather than stalling one.
      framePoints: 200000,
    },
    state,
    stats,
    charts: {}, // metric -> chart, for tests and the console
    pickRun: (run) => pickRun(run == null ? "" : String(run)),
    loadRuns: () => loadRuns(),
    pointCount: (metric) => (state.charts.has(metric) ? state.charts.get(metric).u.data[0].length : 0),
    // Every outage known to the page, oldest first; and the hosts the banner lists.
    outages: () => [...state.outages.values()].flat().sort((a, b) => a.start - b.start).map((o) => ({ ...o })),
    downNow: () => [...$("down-list").querySelectorAll("[data-host]")].map((el) => el.dataset.host),
    // Redraw every chart now; resolves to the milliseconds uPlot took.
    redrawAll: async () => {
      const t0 = performance.now();
      for (const chart of state.charts.values()) redraw(chart);
      await null;
      return performance.now() - t0;
    },
  };
  window.otto = otto;
  let healthDirty = false; // the health table is to be brought up to date at the next tick
  // One row per host, made once; an update only sets the cells whose text changed, so
  // a thousand hosts cost a pass over their outages, not a thousand new rows.
  const healthRows = new Map(); // host -> {row, cells: {kind: td}}

  // ------------------------------------------------------------------ formatting

  // "disk.used_percent[/home]" -> ["disk.used_percent", "/home"]
  function splitMetric(metric) {
    const m = /^(.*)\[(.*)\]$/.exec(metric);
    return m ? [m[1], m[2]] : [metric, null];
  }

  function titleOf(metric) {
    const [base, device] = splitMetric(metric);
    if (device == null) return TITLES[base] || base;
    const title = base === "disk.used_percent" ? "Disk used" : TITLES[base] || base;
    return `${title}: ${device}`;
  }

  function unitOf(name) {
    const metric = splitMetric(name)[0];
    if (/bytes_per_s$/.test(metric)) return "B/s";
    if (/bytes$/.test(metric)) return "B";
    if (/percent$/.test(metric)) return "%";
    return "";
  }

  const BYTE_UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

  function fmtBytes(v, suffix) {
    let i = 0;
    let a = Math.abs(v);
    while (a >= 1024 && i < BYTE_UNITS.length - 1) {
      a /= 1024;
      v /= 1024;
      i += 1;
    }
    const digits = i === 0 || a >= 100 ? 0 : a >= 10 ? 1 : 2;
    return `${trimZeros(v.toFixed(digits))} ${BYTE_UNITS[i]}${suffix}`;
  }

  function fmtNumber(v) {
    const a = Math.abs(v);
    if (a >= 1e9) return `${trimZeros((v / 1e9).toFixed(1))}G`;
    if (a >= 1e6) return `${trimZeros((v / 1e6).toFixed(1))}M`;
    if (a >= 1e4) return `${trimZeros((v / 1e3).toFixed(1))}k`;
    return trimZeros(v.toFixed(a >= 100 ? 0 : a >= 10 ? 1 : 2));
  }

  function trimZeros(s) {
    return s.includes(".") ? s.replace(/\.?0+$/, "") : s;
  }

  function fmtValue(unit, v) {
    if (v == null || !Number.isFinite(v)) return "–";
    if (unit === "B/s") return fmtBytes(v, "/s");
    if (unit === "B") return fmtBytes(v, "");
    if (unit === "%") return `${trimZeros(v.toFixed(Math.abs(v) >= 10 ? 0 : 1))}%`;
    return fmtNumber(v);
  }

  function fmtTime(t) {
    const d = new Date(t * 1000);
    const time = d.toLocaleTimeString([], { hour12: false });
    const today = new Date().toDateString() === d.toDateString();
    return today ? time : `${d.toLocaleDateString()} ${time}`;
  }

  function fmtSpan(start, end) {
    const sameDay = new Date(start * 1000).toDateString() === new Date(end * 1000).toDateString();
    const until = sameDay ? new Date(end * 1000).toLocaleTimeString([], { hour12: false }) : fmtTime(end);
    return `${fmtTime(start)} – ${until}`;
  }

  // 6 s, 2 min 5 s, 3 h 4 min, 2 d 3 h
  function fmtDuration(seconds) {
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return `${s} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return s % 60 ? `${m} min ${s % 60} s` : `${m} min`;
    const h = Math.floor(m / 60);
    if (h < 24) return m % 60 ? `${h} h ${m % 60} min` : `${h} h`;
    const d = Math.floor(h / 24);
    return h % 24 ? `${d} d ${h % 24} h` : `${d} d`;
  }

  // Tick steps in powers of two, so byte axes read 256 MiB rather than 238.4 MiB.
  const BINARY_INCRS = [];
  for (let k = 0; k <= 5; k += 1) {
    for (const m of [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]) BINARY_INCRS.push(m * 1024 ** k);
  }

  // 24-hour time axis labels; columns: tick step (s), label, then the label used when
  // the year / month / day / hour / minute / second changes, then 1 = append to label.
  const DAY = 86400;
  const TIME_AXIS = [
    [365 * DAY, "{YYYY}", null, null, null, null, null, null, 1],
    [28 * DAY, "{MMM}", "\n{YYYY}", null, null, null, null, null, 1],
    [DAY, "{MMM} {D}", "\n{YYYY}", null, null, null, null, null, 1],
    [3600, "{HH}:00", "\n{MMM} {D} {YYYY}", null, "\n{MMM} {D}", null, null, null, 1],
    [60, "{HH}:{mm}", "\n{MMM} {D} {YYYY}", null, "\n{MMM} {D}", null, null, null, 1],
    [1, ":{ss}", "\n{MMM} {D} {YYYY} {HH}:{mm}", null, "\n{MMM} {D} {HH}:{mm}", null, "\n{HH}:{mm}", null, 1],
  ];

  // Time ticks never closer than a second: rounds are seconds apart at least.
  const TIME_INCRS = [
    1, 2, 5, 10, 15, 30,
    60, 120, 300, 600, 900, 1800,
    3600, 7200, 10800, 14400, 21600, 43200,
    DAY, 2 * DAY, 7 * DAY, 14 * DAY, 30 * DAY, 91 * DAY, 182 * DAY, 365 * DAY,
  ];

  function colorOf(index) {
    if (index < PALETTE.length) return PALETTE[index];
    const hue = Math.round((index * 137.508) % 360);
    return `hsl(${hue}, 55%, 48%)`;
  }

  function cssVar(name, fallback) {
    const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return v || fallback;
  }

  // ------------------------------------------------------------------ charts

  function yRange(unit) {
    return (u, min, max) => {
      if (min == null || max == null || !Number.isFinite(min) || !Number.isFinite(max)) {
        return [0, unit === "%" ? 100 : 1];
      }
      const lo = Math.min(0, min);
      let hi = max > 0 ? max * 1.08 : 1;
      if (unit === "%" && max <= 100) hi = Math.min(100, Math.max(hi, 1));
      return [lo, hi];
    };
  }

  function seriesOpts(host, index, unit) {
    return {
      label: host,
      stroke: colorOf(index),
      // Many lines: hairlines, which the rasterizer draws far faster than wider strokes.
      width: state.hosts.length > 12 ? 1 / uPlot.pxRatio : 1.5,
      show: !state.hidden.has(host),
      value: (u, v) => fmtValue(unit, v),
    };
  }

  function chartWidth(chart) {
    // A chart in the folded section has no width until it is unfolded; then the
    // resize observer gives it one.
    return Math.max(200, Math.floor(chart.body.clientWidth || 480));
  }

  function createChart(metric) {
    const unit = unitOf(metric);
    const card = document.createElement("section");
    card.className = "card";
    card.dataset.metric = metric;
    const head = document.createElement("header");
    const title = document.createElement("h3");
    title.textContent = titleOf(metric);
    const name = document.createElement("code");
    name.textContent = metric;
    const readout = document.createElement("div");
    readout.className = "readout";
    head.append(title, name, readout);
    const body = document.createElement("div");
    body.className = "plot";
    card.append(head, body);
    insertCard(card, metric);

    const cols = state.hosts.map(() => new Array(state.xs.length).fill(null));
    const chart = {
      metric,
      unit,
      card,
      body,
      readout,
      cols,
      data: [state.xs, ...cols],
      dirty: false, // data changed since the last draw
      repaint: false, // only the overlay (events) changed
      visible: true,
      markers: 0, // events drawn in the last paint
      bands: 0, // outage bands drawn in the last paint
      focus: null,
      tip: null, // the outage tip over the plot
      u: null,
    };
    const axis = cssVar("--axis", "#555");
    const grid = cssVar("--grid", "#e6e6e6");
    const yAxis = {
      stroke: axis,
      grid: { stroke: grid, width: 1 },
      ticks: { stroke: grid, width: 1 },
      size: 72,
      values: (u, splits) => splits.map((v) => fmtValue(unit, v)),
    };
    if (unit === "B" || unit === "B/s") yAxis.incrs = BINARY_INCRS;
    const opts = {
      width: chartWidth(chart),
      height: CHART_HEIGHT,
      legend: { show: false },
      cursor: {
        sync: { key: SYNC_KEY },
        drag: { x: true, y: false, setScale: true },
        focus: { prox: 24 },
        points: { show: state.hosts.length <= 12 },
      },
      focus: { alpha: 0.25 },
      scales: { x: { time: true }, y: { range: yRange(unit) } },
      series: [{}, ...state.hosts.map((h, i) => seriesOpts(h, i, unit))],
      axes: [
        {
          stroke: axis,
          grid: { stroke: grid, width: 1 },
          ticks: { stroke: grid, width: 1 },
          values: TIME_AXIS,
          incrs: TIME_INCRS,
        },
        yAxis,
      ],
      hooks: {
        // Outage bands go under the lines (drawClear runs before the series are drawn).
        drawClear: [(u) => drawOutages(chart, u)],
        draw: [(u) => drawEvents(chart, u)],
        setCursor: [(u) => showReadout(chart, u)],
        setSeries: [(u, i, o) => {
          if (o && o.focus != null) chart.focus = i;
        }],
        setSelect: [(u) => {
          if (u.select.width > 0) setZoomed(true);
          healthDirty = true;
        }],
      },
    };
    chart.u = new uPlot(opts, chart.data, body);
    chart.u.over.addEventListener("dblclick", () => resetZoom());
    chart.tip = document.createElement("div");
    chart.tip.className = "outage-tip";
    chart.tip.hidden = true;
    chart.u.over.append(chart.tip);
    state.charts.set(metric, chart);
    otto.charts[metric] = chart;
    visibility.observe(card);
    $("empty").hidden = true;
    return chart;
  }

  function insertCard(card, metric) {
    const detail = splitMetric(metric)[1] != null;
    const container = detail ? moreEl : chartsEl;
    const rank = (m) => {
      const i = ORDER.indexOf(splitMetric(m)[0]);
      return i < 0 ? ORDER.length : i;
    };
    const after = [...container.querySelectorAll(".card")].find((other) => {
      const m = other.dataset.metric;
      return rank(m) > rank(metric) || (rank(m) === rank(metric) && m > metric);
    });
    container.insertBefore(card, after || null);
    if (detail) {
      $("more").hidden = false;
      $("more-count").textContent = String(moreEl.children.length);
    }
  }

  function destroyCharts() {
    for (const chart of state.charts.values()) {
      visibility.unobserve(chart.card);
      chart.u.destroy();
      chart.card.remove();
    }
    state.charts.clear();
    for (const key of Object.keys(otto.charts)) delete otto.charts[key];
    $("more").hidden = true;
  }

  // Each shown host's outages as a band of its colour over the whole plot height, with a
  // solid strip along the top; an open outage reaches the present.
  function drawOutages(chart, u) {
    const min = u.scales.x.min;
    const max = u.scales.x.max;
    let drawn = 0;
    if (min != null && max != null && state.outages.size) {
      const ctx = u.ctx;
      const { left, top, width, height } = u.bbox;
      const dpr = uPlot.pxRatio;
      const now = nowSeconds();
      ctx.save();
      ctx.beginPath();
      ctx.rect(left, top, width, height);
      ctx.clip();
      for (const [host, list] of state.outages) {
        if (state.hidden.has(host)) continue;
        const color = colorOf(state.hostIndex.get(host) ?? 0);
        for (const outage of list) {
          const end = outage.end == null ? Math.max(now, outage.start) : outage.end;
          if (end < min || outage.start > max) continue;
          const x0 = u.valToPos(outage.start, "x", true);
          // At least two pixels: a one-round outage at a coarse zoom stays visible.
          const x1 = Math.max(u.valToPos(end, "x", true), x0 + 2 * dpr);
          ctx.globalAlpha = 0.14;
          ctx.fillStyle = color;
          ctx.fillRect(x0, top, x1 - x0, height);
          ctx.globalAlpha = 0.85;
          ctx.fillRect(x0, top, x1 - x0, 4 * dpr);
          drawn += 1;
        }
      }
      ctx.restore();
    }
    chart.bands = drawn;
  }

  // The outages of shown hosts at time x, for the readout.
  function outagesAt(x) {
    const found = [];
    const now = nowSeconds();
    for (const [host, list] of state.outages) {
      if (state.hidden.has(host)) continue;
      for (const outage of list) {
        const end = outage.end == null ? now : outage.end;
        if (outage.start <= x && x <= end) found.push(outage);
      }
    }
    return found;
  }

  function outageText(outage) {
    const now = nowSeconds();
    const end = outage.end == null ? now : outage.end;
    const span = outage.end == null ? `since ${fmtTime(outage.start)}` : fmtSpan(outage.start, outage.end);
    const still = outage.end == null ? ", still down" : "";
    const why = outage.error ? ` (${outage.error})` : "";
    return `${outage.host} down ${span}, ${fmtDuration(end - outage.start)}${still}${why}`;
  }

  function drawEvents(chart, u) {
    const min = u.scales.x.min;
    const max = u.scales.x.max;
    let drawn = 0;
    if (min != null && max != null && state.eventList.length) {
      const ctx = u.ctx;
      const { left, top, width, height } = u.bbox;
      const dpr = uPlot.pxRatio;
      const background = cssVar("--card", "#fff");
      ctx.save();
      ctx.beginPath();
      ctx.rect(left, top, width, height);
      ctx.clip();
      ctx.font = `${11 * dpr}px system-ui, sans-serif`;
      ctx.textBaseline = "top";
      ctx.textAlign = "left";
      for (const ev of state.eventList) {
        const end = ev.end != null && ev.end > ev.t ? ev.end : ev.t;
        if (end < min || ev.t > max) continue;
        const color = ev.color || DEFAULT_EVENT_COLOR;
        const x0 = Math.round(u.valToPos(ev.t, "x", true)) + 0.5;
        if (end > ev.t) {
          const x1 = u.valToPos(end, "x", true);
          ctx.globalAlpha = 0.13;
          ctx.fillStyle = color;
          ctx.fillRect(x0, top, x1 - x0, height);
          ctx.globalAlpha = 1;
        }
        ctx.strokeStyle = color;
        ctx.lineWidth = 1.5 * dpr;
        ctx.setLineDash([5 * dpr, 3 * dpr]);
        ctx.beginPath();
        ctx.moveTo(x0, top);
        ctx.lineTo(x0, top + height);
        ctx.stroke();
        ctx.setLineDash([]);
        const y = top + (3 + (drawn % 3) * 15) * dpr;
        const text = markerText(ev);
        const textWidth = ctx.measureText(text).width;
        // The label goes right of the line, or left of it near the right edge.
        const boxWidth = textWidth + 6 * dpr;
        const boxLeft = x0 + 3 * dpr + boxWidth > left + width ? x0 - 3 * dpr - boxWidth : x0 + 3 * dpr;
        ctx.globalAlpha = 0.7;
        ctx.fillStyle = background;
        ctx.fillRect(boxLeft, y - 1 * dpr, boxWidth, 14 * dpr);
        ctx.globalAlpha = 1;
        ctx.fillStyle = color;
        ctx.fillText(text, boxLeft + 3 * dpr, y);
        drawn += 1;
      }
      ctx.restore();
    }
    chart.markers = drawn;
  }

  // A marker names the host of a log event; long labels are cut (the list has them whole).
  function markerText(ev) {
    const text = ev.host ? `${ev.host}: ${ev.label}` : String(ev.label);
    return text.length > MARKER_CHARS ? `${text.slice(0, MARKER_CHARS - 1)}…` : text;
  }

  function showReadout(chart, u) {
    const idx = u.cursor.idx;
    const out = chart.readout;
    if (idx == null || u.cursor.left < 0) {
      out.textContent = "";
      return;
    }
    out.textContent = "";
    const time = document.createElement("span");
    time.className = "readout-time";
    time.textContent = fmtTime(state.xs[idx]);
    out.append(time);
    let shown;
    if (chart.focus != null && chart.focus > 0) {
      shown = [chart.focus - 1];
    } else if (state.hosts.length <= 6) {
      shown = state.hosts.map((_, i) => i);
    } else {
      // Many hosts: name the highest, which is usually the one you look for.
      let best = -1;
      for (let i = 0; i < chart.cols.length; i += 1) {
        const v = chart.cols[i][idx];
        if (v != null && !state.hidden.has(state.hosts[i]) && (best < 0 || v > chart.cols[best][idx])) best = i;
      }
      shown = best < 0 ? [] : [best];
    }
    for (const i of shown) {
      if (state.hidden.has(state.hosts[i])) continue;
      const item = document.createElement("span");
      item.className = "readout-item";
      item.style.setProperty("--host", colorOf(i));
      item.textContent = `${state.hosts[i]} ${fmtValue(chart.unit, chart.cols[i][idx])}`;
      out.append(item);
    }
    showOutageTip(chart, u);
  }

  // Over a band, a tip says which host was down, from when to when, and for how long.
  function showOutageTip(chart, u) {
    const tip = chart.tip;
    const left = u.cursor.left;
    const found = left == null || left < 0 ? [] : outagesAt(u.posToVal(left, "x"));
    tip.textContent = "";
    tip.hidden = found.length === 0;
    if (tip.hidden) return;
    for (const outage of found.slice(0, 4)) {
      const line = document.createElement("div");
      line.className = "outage-line";
      line.dataset.host = outage.host;
      line.style.setProperty("--host", colorOf(state.hostIndex.get(outage.host) ?? 0));
      line.textContent = outageText(outage);
      tip.append(line);
    }
    if (found.length > 4) {
      const more = document.createElement("div");
      more.textContent = `and ${found.length - 4} more`;
      tip.append(more);
    }
    // Beside the cursor, on the side with room.
    const width = u.over.clientWidth;
    const flip = left > width / 2;
    tip.style.left = flip ? "" : `${left + 14}px`;
    tip.style.right = flip ? `${width - left + 14}px` : "";
    tip.style.top = "8px"; // the same place on every chart the cursor is synced to
  }

  // ------------------------------------------------------------------ redraws

  let framePending = false;

  function scheduleDraw() {
    if (!framePending) {
      framePending = true;
      requestAnimationFrame(flush);
    }
  }

  let pendingWork = 0; // ms spent on the round(s) not yet fully drawn
  let roundPending = false;

  function flush() {
    framePending = false;
    const t0 = performance.now();
    let points = 0;
    let drawn = 0;
    let more = false;
    for (const chart of state.charts.values()) {
      if (!chart.visible || !(chart.dirty || chart.repaint)) continue;
      const cost = chart.cols.length * state.xs.length;
      if (drawn > 0 && points + cost > otto.options.framePoints) {
        more = true;
        break;
      }
      points += cost;
      drawn += 1;
      if (chart.dirty) {
        redraw(chart);
      } else {
        chart.repaint = false;
        chart.u.redraw(false, false);
      }
    }
    if (more) scheduleDraw();
    if (!drawn) return;
    // uPlot draws in a microtask queued by the calls above; time it by queueing after.
    queueMicrotask(() => {
      const ms = performance.now() - t0;
      record(stats.drawMs, ms);
      if (!roundPending) return;
      pendingWork += ms;
      if (!more) {
        record(stats.updateMs, pendingWork);
        pendingWork = 0;
        roundPending = false;
      }
    });
  }

  function redraw(chart) {
    chart.dirty = false;
    chart.repaint = false;
    const u = chart.u;
    if (state.zoomed && u.scales.x.min != null) {
      const { min, max } = u.scales.x;
      u.setData(chart.data, false);
      u.setScale("x", { min, max });
    } else {
      u.setData(chart.data);
    }
  }

  function markAll(field) {
    for (const chart of state.charts.values()) chart[field] = true;
    scheduleDraw();
  }

  function record(list, value) {
    list.push(value);
    if (list.length > STATS_KEEP) list.splice(0, list.length - STATS_KEEP);
  }

  const visibility = new IntersectionObserver(
    (entries) => {
      for (const entry of entries) {
        const chart = state.charts.get(entry.target.dataset.metric);
        if (!chart) continue;
        chart.visible = entry.isIntersecting;
        if (chart.visible && (chart.dirty || chart.repaint)) scheduleDraw();
      }
    },
    { rootMargin: "200px 0px" },
  );

  let resizePending = false;
  const resizes = new ResizeObserver(() => {
    if (resizePending) return;
    resizePending = true;
    requestAnimationFrame(() => {
      resizePending = false;
      for (const chart of state.charts.values()) {
        const width = chartWidth(chart);
        if (chart.body.clientWidth && width !== chart.u.width) {
          chart.u.setSize({ width, height: CHART_HEIGHT });
        }
      }
    });
  });
  resizes.observe(chartsEl);
  resizes.observe(moreEl);

  // ------------------------------------------------------------------ zoom

  function setZoomed(zoomed) {
    if (state.zoomed === zoomed) return;
    state.zoomed = zoomed;
    $("zoom-reset").hidden = !zoomed;
    $("zoom-state").textContent = zoomed
      ? "Zoomed: live updates keep this time range"
      : "Drag on a chart to zoom, double-click to reset";
    document.body.classList.toggle("zoomed", zoomed);
  }

  function resetZoom() {
    setZoomed(false);
    markAll("dirty");
    healthDirty = true;
  }

  // ------------------------------------------------------------------ data

  // The stream's snapshot holds each distinct timeline once and, per line, the index of
  // its timeline and its values; /api/snapshot-style [t, v] pairs are taken too.
  function columnsOf(snap) {
    if (Array.isArray(snap.timelines)) return { timelines: snap.timelines, series: snap.series || {} };
    const timelines = [];
    const series = {};
    for (const [metric, byHost] of Object.entries(snap.series || {})) {
      series[metric] = {};
      for (const [host, points] of Object.entries(byHost)) {
        const times = points.map((p) => p[0]);
        let index = timelines.findIndex((other) => sameArray(other, times));
        if (index < 0) index = timelines.push(times) - 1;
        series[metric][host] = [index, points.map((p) => p[1])];
      }
    }
    return { timelines, series };
  }

  // The union of the timelines, sorted: usually they are all one and the same.
  function alignTimeline(timelines) {
    let xs = [];
    for (const times of timelines) if (!sameArray(times, xs)) xs = mergeTimes(xs, times);
    return xs;
  }

  function sameArray(a, b) {
    if (a.length !== b.length) return false;
    for (let i = 0; i < a.length; i += 1) if (a[i] !== b[i]) return false;
    return true;
  }

  function mergeTimes(xs, times) {
    const ts = times.slice();
    for (let i = 1; i < ts.length; i += 1) {
      if (ts[i] < ts[i - 1]) {
        ts.sort((a, b) => a - b);
        break;
      }
    }
    const out = [];
    let i = 0;
    let j = 0;
    while (i < xs.length || j < ts.length) {
      let t;
      if (j >= ts.length || (i < xs.length && xs[i] <= ts[j])) t = xs[i++];
      else t = ts[j++];
      if (out.length === 0 || out[out.length - 1] !== t) out.push(t);
    }
    return out;
  }

  // One line's values placed on the shared timeline xs (null where it has no point).
  function fillColumn(times, values, xs) {
    if (times.length === xs.length && sameArray(times, xs)) {
      return values.map((v) => (v == null ? null : v));
    }
    const col = new Array(xs.length).fill(null);
    let j = 0;
    for (let i = 0; i < times.length; i += 1) {
      const t = times[i];
      if (j >= xs.length || xs[j] !== t) {
        j = lowerBound(xs, t);
        if (xs[j] !== t) continue;
      }
      const v = values[i];
      col[j] = v == null ? null : v;
      j += 1;
    }
    return col;
  }

  function lowerBound(xs, t) {
    let lo = 0;
    let hi = xs.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (xs[mid] < t) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  function loadSnapshot(snap) {
    const t0 = performance.now();
    destroyCharts();
    state.live = Boolean(snap.live);
    state.interval = Number(snap.interval) || 0;
    state.run = snap.run || null;
    const { timelines, series } = columnsOf(snap);
    const names = new Set(Object.keys(snap.hosts || {}));
    for (const byHost of Object.values(series)) for (const h of Object.keys(byHost)) names.add(h);
    state.hosts = [...names].sort();
    state.hostIndex = new Map(state.hosts.map((h, i) => [h, i]));
    state.hostState = new Map();
    for (const h of state.hosts) {
      const info = (snap.hosts || {})[h] || {};
      state.hostState.set(h, { up: info.up !== false, error: info.last_error || "" });
    }
    state.xs = alignTimeline(timelines);
    state.lastT = state.xs.length ? state.xs[state.xs.length - 1] : -Infinity;
    state.lastRound = state.xs.length ? state.lastT : null;
    const metrics = new Set([...(snap.metrics || []), ...Object.keys(series)]);
    let points = 0;
    for (const metric of metrics) {
      const chart = createChart(metric);
      const byHost = series[metric] || {};
      state.hosts.forEach((h, i) => {
        const line = byHost[h];
        if (line) {
          const [index, values] = line;
          chart.cols[i] = fillColumn(timelines[index], values, state.xs);
          chart.data[i + 1] = chart.cols[i];
          points += values.length;
        }
      });
      chart.u.setData(chart.data);
    }
    updateKeep();
    state.events = new Map();
    for (const ev of snap.events || []) state.events.set(ev.id, ev);
    sortEvents();
    loadOutages(snap);
    renderEvents();
    renderHosts();
    renderSummary();
    renderBanner();
    renderHealth();
    healthDirty = true; // again once the charts have their scales
    setZoomed(false);
    $("empty").hidden = state.charts.size > 0;
    if (state.runs.length) renderRuns();
    stats.snapshotMs = performance.now() - t0;
    stats.snapshotPoints = points;
    otto.ready = true;
  }

  function updateKeep() {
    const lines = Math.max(1, state.charts.size * state.hosts.length);
    state.keep = Math.max(MIN_KEEP, Math.floor(POINT_BUDGET / lines));
  }

  function addHost(name) {
    const index = state.hosts.length;
    state.hosts.push(name);
    state.hostIndex.set(name, index);
    state.hostState.set(name, { up: true, error: "" });
    for (const chart of state.charts.values()) {
      const col = new Array(state.xs.length).fill(null);
      chart.cols.push(col);
      chart.data.push(col);
      chart.u.addSeries(seriesOpts(name, index, chart.unit), index + 1);
      chart.dirty = true;
    }
    updateKeep();
    return index;
  }

  function applyRound(msg) {
    const t0 = performance.now();
    const t = Number(msg.t);
    if (!(t > state.lastT)) return; // already in the snapshot
    const hosts = msg.hosts || {};
    let hostsChanged = false;
    let hostsAdded = false;
    const flipped = [];
    let outagesChanged = false;
    state.nowBase = t;
    state.nowAt = performance.now();
    for (const [name, cost] of Object.entries(msg.costs || {})) addCost(name, cost);
    for (const [name, info] of Object.entries(hosts)) {
      if (!state.hostIndex.has(name)) {
        addHost(name);
        hostsChanged = true;
        hostsAdded = true;
      }
      const before = state.hostState.get(name);
      const up = info.up !== false;
      const error = up ? "" : info.error || info.last_error || before.error || "down";
      if (before.up !== up || before.error !== error) {
        state.hostState.set(name, { up, error });
        hostsChanged = true;
        flipped.push(name);
      }
      if (info.last_error) state.lastError.set(name, info.last_error);
      if (followOutage(name, t, up, error)) outagesChanged = true;
      if (info.metrics) {
        for (const metric of Object.keys(info.metrics)) {
          if (!state.charts.has(metric)) createChart(metric).dirty = true;
        }
      }
    }
    state.xs.push(t);
    const rows = state.hosts.map((h) => (hosts[h] && hosts[h].metrics) || null);
    for (const chart of state.charts.values()) {
      const { metric, cols } = chart;
      for (let i = 0; i < cols.length; i += 1) {
        const values = rows[i];
        const v = values ? values[metric] : undefined;
        cols[i].push(v == null ? null : v);
      }
      chart.dirty = true;
    }
    if (state.live && state.xs.length > state.keep * 1.1) trim(state.xs.length - state.keep);
    state.lastT = t;
    state.lastRound = t;
    stats.rounds += 1;
    if (hostsAdded) {
      updateKeep();
      renderHosts();
    } else {
      // A host going up or down changes its own item only: rebuilding every item
      // on each flip was the page's main cost with a thousand hosts.
      for (const name of flipped) updateHostItem(name);
    }
    if (outagesChanged || hostsChanged) renderBanner();
    if (outagesChanged) markAll("dirty"); else if (state.open.size) {
      // An open band grows with every round.
      for (const chart of state.charts.values()) chart.dirty = true;
    }
    healthDirty = true;
    renderSummary();
    scheduleDraw();
    const ms = performance.now() - t0;
    record(stats.applyMs, ms);
    pendingWork += ms;
    roundPending = true;
  }

  function trim(count) {
    state.xs.splice(0, count);
    for (const chart of state.charts.values()) for (const col of chart.cols) col.splice(0, count);
  }

  function addEvent(ev) {
    if (!ev || state.events.has(ev.id)) return;
    state.events.set(ev.id, ev);
    sortEvents();
    renderEvents();
    markAll("repaint");
  }

  function sortEvents() {
    state.eventList = [...state.events.values()].sort((a, b) => a.t - b.t);
  }

  // ------------------------------------------------------------------ outages

  function loadOutages(snap) {
    healthRows.clear(); // a new snapshot: new hosts, new colours
    $("health-rows").textContent = "";
    state.outages = new Map();
    state.open = new Map();
    state.lastError = new Map();
    state.costs = new Map();
    const list = (snap.outages || []).slice().sort((a, b) => a.start - b.start);
    for (const o of list) {
      const outage = { host: o.host, start: Number(o.start), end: o.end == null ? null : Number(o.end), error: o.error || "" };
      if (!state.outages.has(outage.host)) state.outages.set(outage.host, []);
      state.outages.get(outage.host).push(outage);
      if (outage.end == null) state.open.set(outage.host, outage);
      if (outage.error) state.lastError.set(outage.host, outage.error);
    }
    for (const [host, info] of Object.entries(snap.hosts || {})) {
      if (info.last_error) state.lastError.set(host, info.last_error);
    }
    for (const [host, cost] of Object.entries(snap.costs || {})) state.costs.set(host, { ...cost });
    const now = Number(snap.now);
    state.nowBase = Number.isFinite(now) ? now : state.lastRound;
    state.nowAt = performance.now();
  }

  // The server's rule: a down round opens an outage unless one is open; the first
  // round up again ends it. Returns true when an outage opened or ended.
  function followOutage(host, t, up, error) {
    const open = state.open.get(host);
    if (up) {
      if (!open) return false;
      open.end = t;
      state.open.delete(host);
      return true;
    }
    if (open) return false;
    const outage = { host, start: t, end: null, error };
    if (!state.outages.has(host)) state.outages.set(host, []);
    state.outages.get(host).push(outage);
    state.open.set(host, outage);
    return true;
  }

  function addCost(host, cost) {
    const tally = state.costs.get(host) || { rounds: 0, seconds: 0, received: 0, processes: 0, counted: 0, last: null };
    tally.rounds += 1;
    tally.seconds += Number(cost.seconds) || 0;
    tally.received += Number(cost.received) || 0;
    if (cost.processes != null) {
      tally.counted += 1;
      tally.processes += Number(cost.processes);
    }
    tally.last = cost;
    state.costs.set(host, tally);
  }

  // The source's time now: its last round's (or the snapshot's) plus the time since.
  function nowSeconds() {
    if (state.nowBase == null) return state.lastRound == null ? 0 : state.lastRound;
    if (!state.live || state.ended) return state.nowBase;
    return state.nowBase + (performance.now() - state.nowAt) / 1000;
  }

  // The shown time range: the zoomed range, else the whole timeline (to now, live).
  // A chart off screen is not redrawn, so its scale may lag: the zoom is read from one
  // on screen.
  function shownWindow() {
    if (state.zoomed) {
      for (const chart of state.charts.values()) {
        if (!chart.visible) continue;
        const { min, max } = chart.u.scales.x;
        if (min != null && max != null && max > min) return [min, Math.min(max, nowSeconds())];
      }
    }
    if (!state.xs.length) return null;
    // Live, the range runs to now: a host down since the last round is down in it.
    const last = state.xs[state.xs.length - 1];
    const end = state.live && !state.ended ? Math.max(last, nowSeconds()) : last;
    return end > state.xs[0] ? [state.xs[0], end] : null;
  }

  function renderBanner() {
    const banner = $("down-banner");
    const list = $("down-list");
    list.textContent = "";
    // Hosts down in their latest round; the duration where the outage's start is known.
    const down = state.hosts.filter((h) => !(state.hostState.get(h) || { up: true }).up);
    banner.hidden = down.length === 0;
    if (!down.length) return;
    $("down-title").textContent = state.live && !state.ended ? "Down now" : "Down at the end of the run";
    const now = nowSeconds();
    const since = (h) => (state.open.has(h) ? state.open.get(h).start : Infinity);
    down.sort((a, b) => since(a) - since(b) || (a < b ? -1 : 1));
    for (const host of down.slice(0, BANNER_HOSTS)) {
      const item = document.createElement("li");
      item.className = "down-host";
      item.dataset.host = host;
      item.style.setProperty("--host", colorOf(state.hostIndex.get(host) ?? 0));
      const name = document.createElement("span");
      name.className = "down-name";
      name.textContent = host;
      const time = document.createElement("span");
      time.className = "down-for";
      const open = state.open.get(host);
      if (open) {
        time.dataset.since = String(open.start);
        time.textContent = `for ${fmtDuration(now - open.start)}`;
        item.title = `${host}: down since ${fmtTime(open.start)}`;
      }
      const why = document.createElement("span");
      why.className = "down-why";
      why.textContent = (state.hostState.get(host) || {}).error || "";
      item.append(name, time, why);
      list.append(item);
    }
    if (down.length > BANNER_HOSTS) {
      const more = document.createElement("li");
      more.className = "down-more";
      more.textContent = `and ${down.length - BANNER_HOSTS} more`;
      list.append(more);
    }
  }

  // Only the durations change between rounds: update them in place.
  function tickBanner() {
    if ($("down-banner").hidden || !state.live || state.ended) return;
    const now = nowSeconds();
    for (const el of $("down-list").querySelectorAll(".down-for[data-since]")) {
      el.textContent = `for ${fmtDuration(now - Number(el.dataset.since))}`;
    }
  }

  function healthRow(host) {
    let entry = healthRows.get(host);
    if (entry) return entry;
    const row = document.createElement("tr");
    row.dataset.host = host;
    const name = document.createElement("th");
    name.scope = "row";
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.setProperty("--host", colorOf(state.hostIndex.get(host)));
    name.append(swatch, document.createTextNode(host));
    const cells = {};
    row.append(name);
    for (const kind of ["status", "availability", "down", "outages", "error", "cost"]) {
      const td = document.createElement("td");
      td.className = `health-${kind}`;
      cells[kind] = td;
      row.append(td);
    }
    entry = { row, cells };
    healthRows.set(host, entry);
    return entry;
  }

  function setCell(td, text, value) {
    if (td.textContent !== text) td.textContent = text;
    if (value !== undefined && td.dataset.value !== value) td.dataset.value = value;
  }

  function renderHealth() {
    const t0 = performance.now();
    healthDirty = false;
    const panel = $("health-panel");
    panel.hidden = state.hosts.length === 0;
    if (panel.hidden) return;
    const span = shownWindow();
    const shown = $("health-window");
    setCell(shown, span ? `over ${fmtSpan(span[0], span[1])} (${fmtDuration(span[1] - span[0])})` : "");
    shown.dataset.start = span ? String(span[0]) : "";
    shown.dataset.end = span ? String(span[1]) : "";
    // Between snapshots hosts are only added, at the end: the rows made stay.
    const rows = $("health-rows");
    for (const host of state.hosts.slice(rows.children.length)) rows.append(healthRow(host).row);
    const now = nowSeconds();
    const length = span ? span[1] - span[0] : 0;
    for (const host of state.hosts) {
      const { row, cells } = healthRow(host);
      const info = state.hostState.get(host) || { up: true, error: "" };
      let downFor = 0;
      let count = 0;
      for (const outage of state.outages.get(host) || []) {
        if (!span) break;
        const end = outage.end == null ? Math.max(now, outage.start) : outage.end;
        const overlap = Math.min(end, span[1]) - Math.max(outage.start, span[0]);
        // An outage that began and ended at the edge still counts when it touches the range.
        if (overlap > 0 || (outage.start >= span[0] && outage.start <= span[1])) {
          count += 1;
          downFor += Math.max(0, overlap);
        }
      }
      const up = String(info.up);
      if (row.dataset.up !== up) row.dataset.up = up;
      setCell(cells.status, info.up ? "up" : "down");
      const availability = length > 0 ? 100 * (1 - Math.min(downFor, length) / length) : null;
      setCell(
        cells.availability,
        availability == null ? "–" : fmtPercent(availability),
        availability == null ? "" : String(availability),
      );
      setCell(cells.down, downFor > 0 ? fmtDuration(downFor) : "–", String(downFor));
      setCell(cells.outages, String(count));
      const error = state.lastError.get(host) || "";
      setCell(cells.error, error || "–");
      if (cells.error.title !== error) cells.error.title = error;
      setCell(cells.cost, costText(state.costs.get(host)));
    }
    record(stats.healthMs, performance.now() - t0);
  }

  function fmtPercent(v) {
    if (v >= 100) return "100%";
    // Never round a host with any down time up to 100 %.
    const digits = v >= 99 ? 2 : 1;
    const factor = 10 ** digits;
    return `${trimZeros((Math.floor(v * factor) / factor).toFixed(digits))}%`;
  }

  function costText(cost) {
    if (!cost || !cost.rounds) return "–";
    const parts = [`${trimZeros(((cost.seconds / cost.rounds) * 1000).toFixed(1))} ms`];
    parts.push(fmtBytes(cost.received / cost.rounds, ""));
    if (cost.counted) parts.push(`${trimZeros((cost.processes / cost.counted).toFixed(1))} proc`);
    return parts.join(" · ");
  }

  // ------------------------------------------------------------------ page parts

  function showHostState(item, badge, name) {
    const info = state.hostState.get(name) || { up: true, error: "" };
    item.dataset.up = String(info.up);
    item.title = info.up
      ? `${name}: up. Click to hide or show its lines.`
      : `${name}: down${info.error ? ` (${info.error})` : ""}. Click to hide or show its lines.`;
    badge.textContent = info.up ? "up" : "down";
  }

  function updateHostItem(name) {
    const entry = state.hostItems.get(name);
    if (entry) showHostState(entry.item, entry.badge, name);
    else renderHosts();
  }

  function renderHosts() {
    const list = $("hosts");
    list.textContent = "";
    state.hostItems = new Map();
    state.hosts.forEach((name, i) => {
      const item = document.createElement("li");
      item.className = "host";
      item.dataset.host = name;
      item.classList.toggle("off", state.hidden.has(name));
      item.setAttribute("role", "button");
      item.tabIndex = 0;
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.setProperty("--host", colorOf(i));
      const label = document.createElement("span");
      label.className = "host-name";
      label.textContent = name;
      const badge = document.createElement("span");
      badge.className = "badge";
      showHostState(item, badge, name);
      state.hostItems.set(name, { item, badge });
      item.append(swatch, label, badge);
      item.addEventListener("click", () => toggleHost(name));
      item.addEventListener("keydown", (e) => {
        if (e.key === "Enter" || e.key === " ") {
          e.preventDefault();
          toggleHost(name);
        }
      });
      list.append(item);
    });
  }

  function toggleHost(name) {
    const show = state.hidden.has(name);
    if (show) state.hidden.delete(name);
    else state.hidden.add(name);
    const index = state.hostIndex.get(name);
    for (const chart of state.charts.values()) chart.u.setSeries(index + 1, { show });
    const item = $("hosts").querySelector(`[data-host="${CSS.escape(name)}"]`);
    if (item) item.classList.toggle("off", !show);
    if (state.outages.has(name)) markAll("repaint"); // its bands come and go with it
  }

  function renderSummary() {
    let up = 0;
    for (const info of state.hostState.values()) if (info.up) up += 1;
    const down = state.hosts.length - up;
    const parts = [];
    if (state.run) parts.push(`run ${runName(state.run)}`);
    parts.push(`${state.hosts.length} host${state.hosts.length === 1 ? "" : "s"}`);
    parts.push(`${up} up`);
    if (down) parts.push(`${down} down`);
    if (state.interval) parts.push(`every ${trimZeros(state.interval.toFixed(2))} s`);
    if (state.lastRound != null) {
      parts.push(`${state.live ? "last round" : "last stored round"} ${fmtTime(state.lastRound)}`);
    }
    $("summary").textContent = parts.join(" · ");
    $("summary").classList.toggle("has-down", down > 0);
  }

  function renderEvents() {
    const list = $("events");
    list.textContent = "";
    for (const ev of [...state.eventList].reverse()) {
      const item = document.createElement("li");
      item.className = "event";
      item.dataset.id = String(ev.id);
      const chip = document.createElement("span");
      chip.className = "chip";
      chip.style.setProperty("--event", ev.color || DEFAULT_EVENT_COLOR);
      const time = document.createElement("time");
      time.textContent = ev.end != null && ev.end > ev.t ? fmtSpan(ev.t, ev.end) : fmtTime(ev.t);
      const label = document.createElement("span");
      label.className = "event-label";
      label.textContent = ev.label;
      item.append(chip, time, label);
      // Host and line come from the watched log: text nodes only, never markup.
      if (ev.host != null) {
        const host = document.createElement("span");
        host.className = "event-host";
        host.textContent = ev.host;
        item.append(host);
      }
      if (ev.line != null) {
        const line = document.createElement("code");
        line.className = "event-line";
        line.textContent = ev.line;
        item.append(line);
      }
      list.append(item);
    }
    $("no-events").hidden = state.eventList.length > 0;
  }

  function setMode(mode) {
    const el = $("mode");
    el.dataset.mode = mode;
    el.textContent = {
      live: "live",
      replay: "replay",
      connecting: "connecting…",
      reconnecting: "reconnecting…",
      stopped: "stopped",
    }[mode] || mode;
    el.title = {
      live: "Receiving rounds as they are collected",
      replay: "Showing a saved run",
      connecting: "Connecting to the collector",
      reconnecting: "The connection dropped; retrying",
      stopped: "The collector has stopped; showing what it gathered",
    }[mode] || "";
  }

  // ------------------------------------------------------------------ stream

  function handle(msg) {
    switch (msg.type) {
      case "snapshot":
        loadSnapshot(msg.snapshot || {});
        setMode(state.live ? "live" : "replay");
        break;
      case "round":
        applyRound(msg);
        break;
      case "event":
        addEvent(msg.event);
        break;
      case "end":
        state.ended = true;
        if (state.stream) state.stream.close();
        setMode(state.live ? "stopped" : "replay");
        break;
      default:
        break;
    }
  }

  function connect() {
    stats.connectAt = performance.now();
    setMode("connecting");
    state.ended = false;
    const url = state.pick ? `${STREAM_URL}?run=${encodeURIComponent(state.pick)}` : STREAM_URL;
    const stream = new EventSource(url);
    state.stream = stream;
    stream.onopen = () => {
      stats.openedAt = performance.now();
    };
    stream.onmessage = (e) => {
      if (state.stream !== stream) return; // a run picked since
      const t0 = performance.now();
      let msg;
      try {
        msg = JSON.parse(e.data);
      } catch (error) {
        console.warn("otto: unreadable message", error);
        return;
      }
      if (msg.type === "snapshot") {
        stats.snapshotArrivedAt = t0;
        stats.snapshotParseMs = performance.now() - t0;
        stats.snapshotBytes = e.data.length;
      }
      handle(msg);
    };
    stream.onerror = () => {
      if (state.ended || state.stream !== stream) return;
      // EventSource retries by itself; each new connection starts with a snapshot.
      setMode("reconnecting");
    };
  }

  // ------------------------------------------------------------------ event form

  $("event-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const input = $("event-label");
    const button = $("event-add");
    const error = $("event-error");
    const label = input.value.trim();
    if (!label) return;
    button.disabled = true;
    try {
      const response = await fetch(EVENTS_URL, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ label, color: $("event-color").value }),
      });
      const body = await response.json().catch(() => ({}));
      if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
      addEvent(body);
      input.value = "";
      error.textContent = "";
    } catch (failure) {
      error.textContent = `Could not add the event: ${failure.message}`;
    } finally {
      button.disabled = false;
    }
  });

  $("zoom-reset").addEventListener("click", resetZoom);

  // The banner's durations run on between rounds; the health table follows the rounds
  // and the zoom, rebuilt at most once a tick.
  setInterval(() => {
    tickBanner();
    if (healthDirty) renderHealth();
  }, HEALTH_EVERY_MS);

  // ------------------------------------------------------------------ runs

  function runName(run) {
    // A collector without --db keeps its run in memory only: it has no number.
    const name = run.id == null ? "this run (not stored)" : `#${run.id}`;
    return run.label ? `${name} ${run.label}` : name;
  }

  function runText(run) {
    const parts = [runName(run), fmtTime(run.started)];
    if (run.id === state.current) parts.push(state.live ? "live" : "shown first");
    else if (run.ended == null) parts.push("not ended");
    return parts.join(" · ");
  }

  // The run picker lists the runs of the source's database; it is hidden when there
  // is only the one run shown.
  async function loadRuns() {
    let body;
    try {
      const response = await fetch(RUNS_URL);
      if (!response.ok) return;
      body = await response.json();
    } catch (error) {
      console.info("otto: no run list", error);
      return;
    }
    const runs = Array.isArray(body.runs) ? body.runs : [];
    const current = body.current == null ? null : body.current;
    // Rebuilding the options while the list is open would close it: only on a change.
    if (current === state.current && JSON.stringify(runs) === JSON.stringify(state.runs)) return;
    state.current = current;
    state.runs = runs;
    renderRuns();
  }

  function renderRuns() {
    const select = $("run");
    const focused = document.activeElement === select;
    select.textContent = "";
    for (const run of state.runs) {
      const option = document.createElement("option");
      option.value = run.id === state.current ? "" : String(run.id);
      option.textContent = runText(run);
      if (run.note) option.title = run.note;
      select.append(option);
    }
    const shown = state.run ? state.run.id : state.current;
    const match = state.runs.find((r) => (state.pick ? String(r.id) === state.pick || r.label === state.pick : r.id === shown));
    select.value = match ? (match.id === state.current ? "" : String(match.id)) : "";
    // Live, the menu says which run is being collected, even when it is the only one.
    $("run-pick").hidden = !state.runs.length || (state.runs.length < 2 && !state.pick && !state.live);
    setEventForm();
    if (focused) select.focus();
  }

  // Events are added to the run the source shows by itself, never to a stored one.
  function setEventForm() {
    const past = Boolean(state.pick);
    $("event-form").classList.toggle("past", past);
    for (const el of $("event-form").elements) el.disabled = past;
    const own = state.runs.find((r) => r.id === state.current);
    $("event-label").placeholder = !past
      ? "Mark an event on the timeline"
      : own
        ? `Events go to run ${runName(own)}`
        : "Events go to the run shown first";
  }

  function pickRun(value) {
    const pick = value && String(value) !== String(state.current) ? String(value) : null;
    state.pick = pick;
    const params = new URLSearchParams(location.search);
    if (pick) params.set("run", pick);
    else params.delete("run");
    const query = params.toString();
    history.replaceState(null, "", query ? `?${query}` : location.pathname);
    setEventForm();
    otto.ready = false;
    if (state.stream) state.stream.close();
    state.stream = null;
    connect();
  }

  $("run").addEventListener("change", (e) => pickRun(e.target.value));
  // Another collector may have added a run to the file: list them again when reached.
  $("run-pick").addEventListener("pointerenter", () => loadRuns());
  $("run").addEventListener("focus", () => loadRuns());

  const asked = new URLSearchParams(location.search).get("run");
  loadRuns().then(() => {
    if (asked && asked === String(state.current)) pickRun("");
  });
  if (asked) {
    state.pick = asked;
    setEventForm();
  }
  connect();
})();
