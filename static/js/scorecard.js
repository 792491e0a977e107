// Courier scorecard, live: the page listens to its scope's dashboard stream (the same
// WebSocket as the dashboard, /ws/dashboard/) and reloads its table whenever a frame says the
// scope was recomputed (a change, or the periodic refresh as the window slides). The table
// itself comes from the server (htmx), sorted as the page asks.
(function () {
  "use strict";
  const root = document.getElementById("scorecard-root");
  if (!root) return;
  const badge = document.getElementById("live-badge");
  const RETRY_BASE_MS = 500;
  const RETRY_MAX_MS = 4000;
  const HEARTBEAT_MS = 5000;
  let socket = null;
  let socketPath = null;
  let retry = RETRY_BASE_MS;
  let reloading = false;
  // Each table the person asks for (a column, a window, a site) counts one; a live reload that
  // started before the latest such request must not undo it when its answer comes last.
  let chosen = 0;
  const reloadsStartedAt = new WeakMap(); // a live reload's request -> `chosen` when it began

  function region() {
    return document.getElementById("scorecard");
  }

  function stateSet(state, text) {
    root.dataset.liveState = state;
    badge.className = "live-badge live-badge--" + state;
    badge.textContent = text;
  }

  function reload() {
    const current = region();
    if (!current || reloading || !window.htmx) return;
    reloading = true;
    window.htmx
      .ajax("GET", current.dataset.refreshUrl, { target: "#scorecard", swap: "outerHTML" })
      .finally(function () {
        reloading = false;
      });
  }

  function connect() {
    const current = region();
    if (!current) return;
    socketPath = current.dataset.wsPath;
    const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    const opened = new WebSocket(scheme + window.location.host + socketPath);
    socket = opened;
    opened.onopen = function () {
      retry = RETRY_BASE_MS;
      stateSet("live", "Live");
    };
    opened.onmessage = function (event) {
      const frame = JSON.parse(event.data);
      if (frame.type === "view") reload();
      else if (frame.type === "signed_out") window.location.reload();
    };
    opened.onclose = function () {
      if (socket !== opened) return; // replaced on purpose (another scope)
      stateSet("reconnecting", "Reconnecting…");
      window.setTimeout(connect, retry);
      retry = Math.min(retry * 2, RETRY_MAX_MS);
    };
  }

  function askedByPerson(event) {
    const elt = event.detail.elt;
    return !!elt && elt.tagName === "A" && root.contains(elt);
  }
  document.body.addEventListener("htmx:beforeRequest", function (event) {
    if (askedByPerson(event)) chosen += 1;
    else if (event.detail.xhr) reloadsStartedAt.set(event.detail.xhr, chosen);
  });
  document.body.addEventListener("htmx:beforeSwap", function (event) {
    const xhr = event.detail.xhr;
    if (xhr && reloadsStartedAt.has(xhr) && reloadsStartedAt.get(xhr) !== chosen) {
      event.detail.shouldSwap = false;
    }
  });

  // Another window or site swapped in: follow its stream.
  document.body.addEventListener("htmx:afterSwap", function () {
    const current = region();
    if (current && current.dataset.wsPath !== socketPath && socket) {
      const old = socket;
      socket = null;
      old.close();
      connect();
    }
  });
  window.setInterval(function () {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "ping" }));
  }, HEARTBEAT_MS);
  connect();
})();
