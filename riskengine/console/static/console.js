// The overview's chart: decisions per second by outcome, redrawn from the JSON the
// htmx-refreshed panel carries (#rate-data).
(function () {
  "use strict";
  var colours = { accept: "#1f7a3a", review: "#a86a00", reject: "#b3261e" };
  var outcomes = ["accept", "review", "reject"];
  var plot = null;

  function read() {
    var node = document.getElementById("rate-data");
    if (!node) { return null; }
    var series = JSON.parse(node.textContent);
    return [series.t].concat(outcomes.map(function (o) { return series[o]; }));
  }

  function draw() {
    var target = document.getElementById("rate-chart");
    var data = read();
    if (!target || !data) { return; }
    if (plot === null) {
      plot = new uPlot({
        width: Math.max(target.clientWidth - 10, 300), height: 240,
        series: [{}].concat(outcomes.map(function (o) {
          return { label: o + "/s", stroke: colours[o], width: 2 };
        })),
        axes: [{}, { label: "decisions/s" }]
      }, data, target);
    } else {
      plot.setData(data);
    }
  }

  document.addEventListener("DOMContentLoaded", draw);
  document.body.addEventListener("htmx:afterSwap", draw);
})();
