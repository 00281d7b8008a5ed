// Live updates: the server tells the page when chancy announced a change (server-sent
// events, debounced on the server); the page then reloads its live part (#live) with
// htmx. Nothing polls: no event, no request.
(function () {
  "use strict";
  function connect() {
    var url = document.body.getAttribute("data-events");
    if (!url || !window.EventSource) return;
    var source = new EventSource(url);
    var dot = document.getElementById("live-dot");
    source.addEventListener("open", function () { if (dot) dot.className = "on"; });
    source.addEventListener("error", function () { if (dot) dot.className = ""; });
    source.addEventListener("changed", function () {
      document.body.dispatchEvent(new CustomEvent("chancy-changed"));
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", connect);
  } else {
    connect();
  }
})();
