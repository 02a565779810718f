/* The portal's only script (the CSP allows no inline script): copy buttons, dialogs, confirmations,
   and charts drawn with uPlot from data the page passes through json_script. Every page works
   without it; this adds comfort, never function. */
(function () {
  "use strict";

  // --- copy buttons: <button data-copy="#element-id">Copy</button> ---
  function copyFrom(button) {
    var target = document.querySelector(button.getAttribute("data-copy"));
    if (!target) return;
    var text = target.value !== undefined && target.tagName !== "CODE" ? target.value : target.textContent;
    var done = function () {
      var label = button.textContent;
      button.textContent = "Copied";
      button.setAttribute("aria-live", "polite");
      setTimeout(function () { button.textContent = label; }, 1600);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { selectText(target); });
    } else {
      selectText(target);
      try { document.execCommand("copy"); done(); } catch (e) { /* the text stays selected */ }
    }
  }

  function selectText(element) {
    var range = document.createRange();
    range.selectNodeContents(element);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  // --- dialogs: <button data-dialog="dialog-id">, <button data-close> inside the dialog ---
  function openDialog(id) {
    var dialog = document.getElementById(id);
    if (dialog && !dialog.open) {
      dialog.showModal();
      var first = dialog.querySelector("input:not([type=hidden]), select, textarea, button");
      if (first) first.focus();
    }
  }

  document.addEventListener("click", function (event) {
    var copy = event.target.closest("[data-copy]");
    if (copy) { event.preventDefault(); copyFrom(copy); return; }
    var opener = event.target.closest("[data-dialog]");
    if (opener) { event.preventDefault(); openDialog(opener.getAttribute("data-dialog")); return; }
    var closer = event.target.closest("[data-close]");
    if (closer) {
      var dialog = closer.closest("dialog");
      if (dialog) { event.preventDefault(); dialog.close(); }
    }
  });

  // Plain forms that need a confirmation: <form data-confirm="Revoke this key?">
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !form.hasAttribute("hx-post") && !window.confirm(question)) event.preventDefault();
  });

  // A response swapped into a dialog opens it (the key-created panel, a validation error).
  document.addEventListener("htmx:afterSwap", function (event) {
    var dialog = event.target.closest ? event.target.closest("dialog") : null;
    if (dialog && !dialog.open) dialog.showModal();
    drawCharts(event.target);
  });

  // --- charts: <div class="chart" data-chart="json-script-id" data-kind="line|bars"></div> ---
  // The JSON is {"x": [unix seconds...], "series": [{"label": "...", "values": [...], "unit": "EUR"}]}.
  var palette = ["#0f6e6a", "#2f6fed", "#b7791f", "#9b2c9b", "#c0392b", "#2c7a7b", "#6b7280", "#4c51bf"];

  function formatValue(unit) {
    return function (self, value) {
      if (value == null) return "–";
      var text = Math.abs(value) >= 1000 ? Math.round(value).toLocaleString() : (Math.round(value * 100) / 100).toLocaleString();
      return unit ? text + " " + unit : text;
    };
  }

  function drawChart(element) {
    if (element.getAttribute("data-drawn") || typeof window.uPlot === "undefined") return;
    var source = document.getElementById(element.getAttribute("data-chart"));
    if (!source) return;
    var data = JSON.parse(source.textContent);
    if (!data.x || data.x.length === 0) return;
    var spark = element.classList.contains("spark");
    var bars = element.getAttribute("data-kind") === "bars";
    var width = element.clientWidth || 600;
    var height = spark ? 36 : parseInt(element.getAttribute("data-height") || "200", 10);
    var series = [{}];
    var columns = [data.x];
    data.series.forEach(function (s, i) {
      var colour = palette[i % palette.length];
      series.push({
        label: s.label,
        stroke: colour,
        width: spark ? 1.5 : 2,
        fill: bars || spark ? colour + "33" : undefined,
        paths: bars && window.uPlot.paths && window.uPlot.paths.bars ? window.uPlot.paths.bars({ size: [0.7, 40] }) : undefined,
        points: { show: !spark && data.x.length < 40 },
        value: formatValue(s.unit || ""),
      });
      columns.push(s.values);
    });
    var axisColour = getComputedStyle(document.body).getPropertyValue("--muted") || "#5b6472";
    var gridColour = getComputedStyle(document.body).getPropertyValue("--border") || "#dfe3e8";
    var options = {
      width: width,
      height: height,
      series: series,
      legend: { show: !spark && data.series.length > 1 },
      cursor: { show: !spark, points: { show: !spark } },
      // counts and money start at zero, so a bar's height is its value (not its distance from the minimum)
      scales: { x: { time: true }, y: { range: function (u, min, max) { return [Math.min(0, min), max > 0 ? max * 1.08 : 1]; } } },
      axes: spark
        ? [{ show: false }, { show: false }]
        : [
            { stroke: axisColour, grid: { stroke: gridColour, width: 1 }, ticks: { stroke: gridColour } },
            { stroke: axisColour, grid: { stroke: gridColour, width: 1 }, ticks: { stroke: gridColour }, size: 60 },
          ],
    };
    element.setAttribute("data-drawn", "1");
    var plot = new window.uPlot(options, columns, element);
    if (!spark && window.ResizeObserver) {
      new ResizeObserver(function () {
        if (element.clientWidth && Math.abs(element.clientWidth - plot.width) > 4) plot.setSize({ width: element.clientWidth, height: height });
      }).observe(element);
    }
  }

  function drawCharts(root) {
    (root || document).querySelectorAll("[data-chart]").forEach(drawChart);
  }

  document.addEventListener("DOMContentLoaded", function () {
    drawCharts(document);
    var opened = document.querySelector("dialog[data-open]");
    if (opened) opened.showModal();
  });
})();
