// Modelyard dashboard: CSRF for htmx requests and the training curves (uPlot).
(function () {
  "use strict";

  // htmx requests carry the session's CSRF token as a header.
  document.addEventListener("htmx:configRequest", function (event) {
    var token = document.body.dataset.csrf;
    if (token) { event.detail.headers["X-CSRF-Token"] = token; }
  });

  var COLORS = ["#0b5cad", "#c0392b", "#1e8449", "#8e44ad", "#d35400", "#117a8b", "#7f6000", "#34495e"];

  // What one step or epoch event adds to the curves: [[series name, step, value], ...].
  function pointsOf(event) {
    var out = [];
    var step = event.step;
    if (typeof step !== "number") { return out; }
    if (event.type === "step" && typeof event.loss === "number") { out.push(["loss", step, event.loss]); }
    if (event.type === "epoch") {
      ["train", "val"].forEach(function (split) {
        var metrics = event[split] || {};
        Object.keys(metrics).sort().forEach(function (name) {
          if (typeof metrics[name] === "number" && isFinite(metrics[name])) {
            out.push([split + " " + name, step, metrics[name]]);
          }
        });
      });
    }
    return out;
  }

  // Curves: named series of [step, value] points, drawn on one step axis.
  function Curves(element, prefix) {
    this.element = element;
    this.prefix = prefix || "";
    this.series = {};
    this.order = [];
    this.plot = null;
    this.count = 0;
  }
  Curves.prototype.add = function (event, prefix) {
    var self = this;
    pointsOf(event).forEach(function (p) {
      var name = (prefix || self.prefix) + p[0];
      if (!self.series[name]) { self.series[name] = new Map(); self.order.push(name); }
      self.series[name].set(p[1], p[2]);
      self.count += 1;
    });
  };
  Curves.prototype.data = function () {
    var steps = new Set();
    var self = this;
    this.order.forEach(function (name) { self.series[name].forEach(function (_v, s) { steps.add(s); }); });
    var xs = Array.from(steps).sort(function (a, b) { return a - b; });
    var data = [xs];
    this.order.forEach(function (name) {
      var values = self.series[name];
      data.push(xs.map(function (s) { return values.has(s) ? values.get(s) : null; }));
    });
    return data;
  };
  Curves.prototype.draw = function () {
    this.element.dataset.points = String(this.count);
    if (!this.order.length || typeof uPlot === "undefined") { return; }
    var data = this.data();
    var names = this.order.join("|");
    if (this.plot && this.plot.__names === names) { this.plot.setData(data); return; }
    if (this.plot) { this.plot.destroy(); }
    var width = Math.max(320, this.element.clientWidth || 800);
    var series = [{ label: "step" }].concat(this.order.map(function (name, i) {
      var scale = /loss|error/.test(name) ? "loss" : "metric";
      return { label: name, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: true, scale: scale,
               points: { show: !/ loss$|^loss$|v\d+ loss$/.test(name) } };
    }));
    this.plot = new uPlot({
      width: width, height: 320, series: series,
      scales: { x: { time: false } },
      axes: [{ label: "step" }, { scale: "loss", label: "loss" }, { scale: "metric", side: 1, label: "metric", grid: { show: false } }],
    }, data, this.element);
    this.plot.__names = names;
  };

  function liveJob(element) {
    var curves = new Curves(element);
    var pending = false;
    function redraw() {
      if (pending) { return; }
      pending = true;
      window.requestAnimationFrame(function () { pending = false; curves.draw(); });
    }
    var source = new EventSource("/ui/jobs/" + encodeURIComponent(element.dataset.job) + "/stream");
    ["step", "epoch"].forEach(function (type) {
      source.addEventListener(type, function (message) {
        curves.add(Object.assign({ type: type }, JSON.parse(message.data)));
        redraw();
      });
    });
    source.addEventListener("end", function () { source.close(); element.dataset.done = "true"; curves.draw(); });
    window.addEventListener("beforeunload", function () { source.close(); });
  }

  function comparison(element) {
    var raw = document.getElementById("compare-data");
    if (!raw) { return; }
    var byVersion = JSON.parse(raw.textContent);
    var curves = new Curves(element);
    Object.keys(byVersion).sort().forEach(function (version) {
      byVersion[version].forEach(function (event) { curves.add(event, version + " "); });
    });
    curves.draw();
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-chart=job]").forEach(liveJob);
    document.querySelectorAll("[data-chart=compare]").forEach(comparison);
  });
})();
