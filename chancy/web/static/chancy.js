// Live updates: the server tells the page when chancy announced a change (server-sent
// events, debounced on the server); the page then reloads its live part (#live) with
// htmx. Nothing polls: no event, no request. A change announced while a reload is in
// flight reloads once more when it is in (htmx would drop a request queued on the
// part the reload replaces).
(function () {
  "use strict";
  var reloading = false;
  var stale = false;
  function reload() {
    var live = document.getElementById("live");
    if (!live || !window.htmx) return;
    if (reloading) {
      stale = true;
      return;
    }
    reloading = true;
    stale = false;
    var url = live.getAttribute("data-live");
    var done = function () {
      reloading = false;
      if (stale) reload();
    };
    window.htmx
      .ajax("GET", url, { source: live, target: live, select: "#live", swap: "outerHTML" })
      .then(done, done);
  }
  var source = null;
  function showLive() {
    // Looked up each time: a boosted page replaces the header and its dot.
    var dot = document.getElementById("live-dot");
    if (dot) dot.className = source && source.readyState === EventSource.OPEN ? "on" : "";
  }
  function connect() {
    var url = document.body.getAttribute("data-events");
    if (!url || !window.EventSource) return;
    source = new EventSource(url);
    source.addEventListener("open", showLive);
    source.addEventListener("error", showLive);
    source.addEventListener("changed", reload);
    document.body.addEventListener("htmx:afterSettle", showLive);
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", connect);
  } else {
    connect();
  }
})();
