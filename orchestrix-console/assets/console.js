// Orchestrix console: the live tail. Vendored, no dependencies. Rows are
// built with textContent, so nothing from the log is ever parsed as HTML.
"use strict";
(function () {
  var table = document.getElementById("tail");
  if (!table || !window.EventSource) { return; }
  var body = table.tBodies[0];
  var status = document.getElementById("tail-status");
  var MAX_ROWS = 500;
  function setStatus(state, text) { status.dataset.state = state; status.textContent = text; }
  function cell(row, text, href) {
    var td = row.insertCell();
    if (href) { var a = document.createElement("a"); a.href = href; a.textContent = text; td.appendChild(a); }
    else { td.textContent = text; }
  }
  var source = new EventSource(table.dataset.source);
  source.onopen = function () { setStatus("live", "live"); };
  source.onerror = function () { setStatus("connecting", "reconnecting…"); };
  source.addEventListener("failure", function (e) { setStatus("failed", "the store failed: " + e.data); });
  source.addEventListener("append", function (e) {
    var event = JSON.parse(e.data);
    var row = body.insertRow(0);
    row.className = "fresh";
    row.dataset.id = event.id;
    cell(row, String(event.position), event.event_href);
    cell(row, event.stream, event.stream_href);
    cell(row, String(event.version));
    cell(row, event.type, event.event_href);
    cell(row, event.at);
    while (body.rows.length > MAX_ROWS) { body.deleteRow(body.rows.length - 1); }
  });
})();
