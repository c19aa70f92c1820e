/* Watchkeeper reports: the one charting helper every page of the site shares (copied once to
   reports/_static/watchkeeper/charts.js). Draws inline SVG from JSON the page embeds in
   <script type="application/json" id="...">, referenced by <figure class="wk-chart" data-chart="id">.
   Text goes in through textContent and setAttribute only: data-derived strings never become
   markup. No network access, no dependencies. */
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";

  function el(name, attrs, parent) {
    var e = document.createElementNS(NS, name);
    if (attrs) { for (var k in attrs) { if (Object.prototype.hasOwnProperty.call(attrs, k)) { e.setAttribute(k, String(attrs[k])); } } }
    if (parent) { parent.appendChild(e); }
    return e;
  }
  function text(parent, x, y, s, attrs) {
    var t = el("text", attrs || {}, parent);
    t.setAttribute("x", x); t.setAttribute("y", y);
    t.textContent = s;
    return t;
  }
  function tip(node, s) { var t = el("title", null, node); t.textContent = s; return node; }
  function isNum(v) { return typeof v === "number" && isFinite(v); }

  function fmt(v, kind) {
    if (!isNum(v)) { return "n/a"; }
    if (kind === "pct") { return v === 0 ? "0%" : (v * 100).toFixed(Math.abs(v) < 0.1 ? 2 : 1) + "%"; }
    var a = Math.abs(v);
    if (a !== 0 && (a < 0.001 || a >= 100000)) { return v.toExponential(2); }
    return String(parseFloat(v.toPrecision(4)));
  }
  function niceStep(span, count) {
    var raw = span / Math.max(1, count), mag = Math.pow(10, Math.floor(Math.log10(raw))), n = raw / mag;
    return (n < 1.5 ? 1 : n < 3 ? 2 : n < 7 ? 5 : 10) * mag;
  }
  function shortDay(ds) { return typeof ds === "string" && ds.length === 10 ? ds.slice(5) : String(ds); }

  function legend(figure, items) {
    var box = document.createElement("div");
    box.className = "legend";
    items.forEach(function (it) {
      var span = document.createElement("span");
      var sw = document.createElement("span");
      sw.className = "sw";
      sw.style.background = it.color;
      if (it.dashed) { sw.style.background = "repeating-linear-gradient(90deg," + it.color + " 0 5px, transparent 5px 8px)"; }
      span.appendChild(sw);
      span.appendChild(document.createTextNode(it.label));
      box.appendChild(span);
    });
    figure.appendChild(box);
  }

  var MARK_KINDS = { deployment: 1, override: 1, silence: 1 };

  function drawMarkers(svg, spec, xOf, top, bottom) {
    (spec.markers || []).forEach(function (m) {
      var i = spec.days.indexOf(m.ds);
      if (i < 0) { return; }
      var kind = MARK_KINDS[m.kind] ? m.kind : "other";
      var g = el("g", null, svg);
      el("line", { x1: xOf(i), x2: xOf(i), y1: top, y2: bottom, "class": "marker " + kind }, g);
      text(g, xOf(i) + 2, top + 9, (m.kind || "event").charAt(0).toUpperCase(), { "class": "marker-label" });
      tip(g, m.ds + ": " + (m.label || m.kind));
    });
  }

  function xAxis(svg, days, xOf, y) {
    var g = el("g", { "class": "axis" }, svg);
    el("line", { x1: xOf(0) - 4, x2: xOf(days.length - 1) + 4, y1: y, y2: y }, g);
    var every = Math.max(1, Math.ceil(days.length / 12));
    for (var i = 0; i < days.length; i += every) {
      el("line", { x1: xOf(i), x2: xOf(i), y1: y, y2: y + 4 }, g);
      text(g, xOf(i), y + 15, shortDay(days[i]), { "text-anchor": "middle" });
    }
  }

  function line(figure, spec) {
    var W = 900, H = spec.height || 210, ml = 58, mr = 16, mt = 14, mb = 30;
    var days = spec.days || [];
    var n = Math.max(days.length, 1);
    var vals = [];
    (spec.series || []).forEach(function (s) { (s.values || []).forEach(function (v) { if (isNum(v)) { vals.push(v); } }); });
    (spec.thresholds || []).forEach(function (t) { if (isNum(t.value)) { vals.push(t.value); } });
    var y = spec.y || {};
    var lo = isNum(y.min) ? y.min : Math.min.apply(null, vals.length ? vals : [0]);
    var hi = isNum(y.max) ? y.max : Math.max.apply(null, vals.length ? vals : [1]);
    if (isNum(y.min) && vals.length) { lo = Math.min(lo, Math.min.apply(null, vals)); }
    if (isNum(y.max) && vals.length) { hi = Math.max(hi, Math.max.apply(null, vals)); }
    if (hi - lo < 1e-12) { hi = lo + (Math.abs(lo) || 1) * 0.1; lo = lo - (Math.abs(lo) || 1) * 0.1; }
    var pad = (hi - lo) * 0.06; if (!isNum(y.min)) { lo -= pad; } if (!isNum(y.max)) { hi += pad; }
    var pw = W - ml - mr, ph = H - mt - mb;
    function xOf(i) { return ml + (i + 0.5) * pw / n; }
    function yOf(v) { return mt + ph - (v - lo) / (hi - lo) * ph; }
    var svg = el("svg", { viewBox: "0 0 " + W + " " + H, role: "img" });
    svg.setAttribute("aria-label", spec.title || "chart");
    var step = niceStep(hi - lo, 5), g = el("g", { "class": "axis" }, svg);
    for (var k = Math.ceil(lo / step - 1e-9); k * step <= hi + 1e-12; k++) {
      var t = Math.abs(k * step) < step * 1e-9 ? 0 : k * step;
      el("line", { x1: ml, x2: W - mr, y1: yOf(t), y2: yOf(t), "class": "grid" }, g);
      text(g, ml - 6, yOf(t) + 4, fmt(t, y.format), { "text-anchor": "end" });
    }
    xAxis(svg, days, xOf, mt + ph);
    drawMarkers(svg, spec, xOf, mt, mt + ph);
    (spec.thresholds || []).forEach(function (th) {
      if (!isNum(th.value)) { return; }
      el("line", { x1: ml, x2: W - mr, y1: yOf(th.value), y2: yOf(th.value), "class": "threshold" }, svg);
      text(svg, W - mr - 2, yOf(th.value) - 3, th.label || fmt(th.value, y.format), { "class": "threshold-label", "text-anchor": "end" });
    });
    var items = [];
    (spec.series || []).forEach(function (s, si) {
      var cls = "s" + (isNum(s.color) ? s.color : si % 6);
      var d = "", pen = false;
      (s.values || []).forEach(function (v, i) {
        if (isNum(v)) { d += (pen ? "L" : "M") + xOf(i).toFixed(1) + " " + yOf(v).toFixed(1) + " "; pen = true; }
        else { pen = false; }
      });
      if (d) { el("path", { d: d, "class": "series " + cls + (s.dashed ? " dashed" : "") }, svg); }
      (s.values || []).forEach(function (v, i) {
        if (!isNum(v)) { return; }
        var hollow = s.hollow && s.hollow[i], bad = s.bad && s.bad[i];
        var c = el("circle", { cx: xOf(i), cy: yOf(v), r: bad ? 3.4 : 2.6,
          "class": "pt " + cls + (hollow ? "" : " filled") + (bad ? " bad" : "") }, svg);
        var note = (s.notes && s.notes[i]) ? " (" + s.notes[i] + ")" : "";
        tip(c, days[i] + " " + (s.name || "") + ": " + fmt(v, y.format) + (hollow ? " provisional" : "") + note);
      });
      items.push({ label: s.name || ("series " + (si + 1)), color: "var(--" + cls + ")", dashed: !!s.dashed });
    });
    figure.appendChild(svg);
    if (items.length > 1 || (spec.series || []).some(function (s) { return s.hollow; })) { legend(figure, items); }
  }

  function scaleColor(v) {
    if (!isNum(v)) { return "#f3f4f6"; }
    function mix(a, b, t) {
      var r = [0, 1, 2].map(function (k) { return Math.round(a[k] + (b[k] - a[k]) * t); });
      return "rgb(" + r.join(",") + ")";
    }
    if (v <= 0) { return "rgb(232,245,235)"; }
    if (v < 1) { return mix([232, 245, 235], [255, 214, 102], v); }
    return mix([244, 162, 97], [150, 25, 20], Math.min(1, (v - 1) / 2));
  }

  function heatmap(figure, spec) {
    var rows = spec.rows || [], days = spec.days || [];
    var longest = rows.reduce(function (m, r) { return Math.max(m, String(r.label).length); }, 4);
    var W = 900, ml = Math.min(300, 12 + longest * 6.1), mr = 8, mt = 6, ch = 15, mb = 26;
    var H = mt + rows.length * ch + mb;
    var n = Math.max(days.length, 1), cw = (W - ml - mr) / n;
    function xOf(i) { return ml + (i + 0.5) * cw; }
    var svg = el("svg", { viewBox: "0 0 " + W + " " + H, role: "img" });
    svg.setAttribute("aria-label", spec.title || "heat map");
    var classes = spec.classes || {};
    rows.forEach(function (r, ri) {
      var y = mt + ri * ch;
      var label = String(r.label);
      var shown = label.length > 48 ? label.slice(0, 47) + "\u2026" : label;
      tip(text(svg, ml - 5, y + ch - 4, shown, { "text-anchor": "end" }), label);
      (r.values || []).forEach(function (v, i) {
        var attrs = { x: (ml + i * cw + 0.5).toFixed(2), y: y + 0.5, width: Math.max(1, cw - 1).toFixed(2), height: ch - 1 };
        var desc;
        if (spec.mode === "status") {
          var c = classes[String(v)] || ["cell-none", "no result"];
          attrs["class"] = c[0];
          desc = c[1];
        } else {
          attrs.fill = scaleColor(v);
          desc = (r.text && r.text[i]) || fmt(r.raw ? r.raw[i] : v);
          if (r.flags && r.flags[i]) { attrs["class"] = "cell-flag"; }
        }
        tip(el("rect", attrs, svg), label + " \u00b7 " + days[i] + ": " + desc);
      });
    });
    xAxis(svg, days, xOf, mt + rows.length * ch + 2);
    drawMarkers(svg, spec, xOf, mt, mt + rows.length * ch);
    figure.appendChild(svg);
    if (spec.legend) {
      legend(figure, spec.legend.map(function (l) { return { label: l[1], color: l[0] }; }));
    }
  }

  var DRAW = { line: line, heatmap: heatmap };

  function drawAll() {
    var figures = document.querySelectorAll("figure.wk-chart[data-chart]");
    Array.prototype.forEach.call(figures, function (figure) {
      var src = document.getElementById(figure.getAttribute("data-chart"));
      var note = document.createElement("p");
      note.className = "wk-note";
      try {
        var spec = JSON.parse(src ? src.textContent : "null");
        if (!spec || !DRAW[spec.type]) { throw new Error("unknown chart " + figure.getAttribute("data-chart")); }
        if (!spec.days || !spec.days.length) { note.textContent = "No data yet."; figure.appendChild(note); return; }
        DRAW[spec.type](figure, spec);
      } catch (err) {
        // A broken chart says so on the page (and in the console, which the browser test watches).
        note.textContent = "This chart could not be drawn: " + err.message;
        figure.appendChild(note);
        console.error("watchkeeper chart", figure.getAttribute("data-chart"), err);
      }
    });
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", drawAll); }
  else { drawAll(); }
}());
