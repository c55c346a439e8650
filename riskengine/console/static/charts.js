// The comparison charts of the experiments and backtest pages. Each chart container
// (an element with data-chart) holds its spec as JSON in a <script type="application/json">
// (riskengine/console/charts.py): "bars" are grouped bars, one per arm and category;
// "lines" are one line per arm over epoch seconds.
(function () {
  "use strict";
  var colours = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860"];
  var HEIGHT = 260;

  function colour(i) { return colours[i % colours.length]; }

  function width(target) { return Math.max(target.clientWidth - 10, 320); }

  function empty(target, text) {
    var note = document.createElement("p");
    note.className = "muted";
    note.textContent = text;
    target.appendChild(note);
  }

  // Grouped bars on a numeric x axis: category i spans [i - 0.4, i + 0.4] and arm j of k
  // sits at i + (j - (k - 1) / 2) * 0.8 / k; every series is null off its own bars.
  // spec.log: a logarithmic value axis (a zero count is left out); spec.horizontal: the
  // categories down the left side (long names stay readable).
  // The powers of ten within a log axis's range (no minor lines).
  function decades(u, axis, min, max) {
    var found = [];
    for (var v = 1; v <= max; v *= 10) { if (v >= min) { found.push(v); } }
    return found;
  }

  function bars(spec, target) {
    var names = spec.categories, k = spec.series.length, n = names.length;
    if (n === 0 || k === 0) { empty(target, "Nothing to draw."); return; }
    var step = 0.8 / k, xs = [], columns = spec.series.map(function () { return []; });
    for (var i = 0; i < n; i++) {
      for (var j = 0; j < k; j++) {
        xs.push(i + (j - (k - 1) / 2) * step);
        for (var s = 0; s < k; s++) {
          var v = s === j ? spec.series[s].values[i] : null;
          columns[s].push(spec.log && v === 0 ? null : v);
        }
      }
    }
    var top = 0, longest = 0;
    spec.series.forEach(function (s) {
      s.values.forEach(function (v) { if (v > top) { top = v; } });
    });
    names.forEach(function (name) { longest = Math.max(longest, String(name).length); });
    var flat = !!spec.horizontal;
    var y = spec.log ? { distr: 3, range: [0.7, Math.max(top * 3, 10)] }
                     : { range: [0, Math.max(top * 1.15, 1)] };
    y.ori = flat ? 0 : 1;
    var categoryAxis = {
      scale: "x", side: flat ? 3 : 2, grid: { show: false },
      size: flat ? Math.min(40 + 7 * longest, 260) : 40,
      splits: function () { return names.map(function (_, i) { return i; }); },
      values: function (u, splits) {
        return splits.map(function (i) { return names[i] === undefined ? "" : names[i]; });
      }
    };
    return new uPlot({
      width: width(target),
      height: flat ? Math.max(HEIGHT, 70 + 26 * n * Math.max(1, k / 2)) : HEIGHT,
      scales: { x: { time: false, range: [-0.5, n - 0.5], ori: flat ? 1 : 0,
                     dir: flat ? -1 : 1 }, y: y },
      axes: [categoryAxis, { scale: "y", side: flat ? 2 : 3, label: spec.y_label,
                             splits: spec.log ? decades : undefined }],
      legend: { live: false },
      cursor: { show: false },
      series: [{}].concat(spec.series.map(function (s, i) {
        return { label: s.label, fill: colour(i), stroke: colour(i), width: 0,
                 points: { show: false },
                 paths: uPlot.paths.bars({ size: [0.9, 80], align: 0 }) };
      }))
    }, [xs].concat(columns), target);
  }

  function lines(spec, target) {
    if (spec.x.length === 0) { empty(target, "No events."); return; }
    var half = 43200;  // half a day each side: one day is a point in the middle
    return new uPlot({
      width: width(target), height: HEIGHT,
      scales: { x: { time: true, auto: false,
                     range: [spec.x[0] - half, spec.x[spec.x.length - 1] + half] },
                y: { range: function (u, min, max) { return [0, Math.max(max * 1.25, 1)]; } } },
      axes: [{}, { label: spec.y_label }],
      legend: { live: false },
      series: [{}].concat(spec.series.map(function (s, i) {
        return { label: s.label, stroke: colour(i), width: 2, points: { show: true } };
      }))
    }, [spec.x].concat(spec.series.map(function (s) { return s.values; })), target);
  }

  function draw(target) {
    var data = target.querySelector('script[type="application/json"]');
    if (!data || target.dataset.drawn) { return; }
    target.dataset.drawn = "1";
    var spec = JSON.parse(data.textContent);
    (spec.kind === "bars" ? bars : lines)(spec, target);
  }

  function drawAll() {
    Array.prototype.forEach.call(document.querySelectorAll("[data-chart]"), draw);
  }

  document.addEventListener("DOMContentLoaded", drawAll);
})();
