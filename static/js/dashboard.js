// Live dashboard client: one WebSocket per page, state in data-live-state on #live-root.
// Frames from the server (dashboards/live.py):
//   {type: "view", html, charts, as_of}  htmx out-of-band fragments + Plotly figures
//   {type: "alerts", html}                the alerts panel only
//   {type: "degraded", message}           the server could not compute: show "stale"
//   {type: "error", message}              bad request; the server closes the socket
//   {type: "unavailable", message}        the database or Redis is away; closed with 4503
(function () {
  "use strict";
  const root = document.getElementById("live-root");
  if (!root) return;
  const badge = document.getElementById("live-badge");
  const errorBox = document.getElementById("live-error");
  const staleAfterMs = Number(root.dataset.staleAfterMs || 30000);
  const PERMANENT_CLOSE_CODES = [4400, 4404];
  // The server is up but its database or Redis is not: retry every second or two (with jitter)
  // so the page is live again within seconds of their return.
  const CLOSE_UNAVAILABLE = 4503;
  const UNAVAILABLE_RETRY_MS = 1000;
  const RETRY_BASE_MS = 500;
  const RETRY_MAX_MS = 4000;

  let socket = null;
  let attempt = 0;
  let retryTimer = null;
  let staleTimer = null;
  let lastUpdate = null; // when the shown numbers were last known good

  function clock(date) {
    return date ? date.toTimeString().slice(0, 8) : "—";
  }

  // `why` (optional): shown in the badge after the state, e.g. "server unavailable, retrying".
  function stateSet(state, why) {
    root.dataset.liveState = state;
    badge.className = "live-badge live-badge--" + state;
    if (state === "live") badge.textContent = "Live";
    else if (state === "connecting") badge.textContent = "Connecting…";
    else if (why) badge.textContent = why.charAt(0).toUpperCase() + why.slice(1) + "… data from " + clock(lastUpdate);
    else if (state === "reconnecting") badge.textContent = "Reconnecting… data from " + clock(lastUpdate);
    else badge.textContent = "Stale since " + clock(lastUpdate);
  }

  function staleTimerArm() {
    clearTimeout(staleTimer);
    staleTimer = setTimeout(function () {
      if (root.dataset.liveState === "live") stateSet("stale");
    }, staleAfterMs);
  }

  function chartsRender(figures) {
    if (!window.Plotly || !figures) return;
    Object.keys(figures).forEach(function (id) {
      const element = document.getElementById(id);
      const figure = figures[id];
      if (element) {
        Plotly.react(element, figure.data, figure.layout, { responsive: true, displaylogo: false });
      }
    });
  }

  function chartsFromPage() {
    const data = document.getElementById("chart-data");
    if (data) chartsRender(JSON.parse(data.textContent));
  }

  // A live frame is rendered once for every watcher: its links that need a permission this
  // user lacks (data-needs-perm, not in the root's data-user-perms) become plain text.
  const userPerms = (root.dataset.userPerms || "").split(" ");

  function linksPrune() {
    document.querySelectorAll("a[data-needs-perm]").forEach(function (link) {
      if (userPerms.indexOf(link.dataset.needsPerm) !== -1) return;
      const text = document.createElement("span");
      text.className = link.className;
      text.textContent = link.textContent;
      link.replaceWith(text);
    });
  }

  function frameApply(frame) {
    if (frame.type === "view") {
      htmx.swap(document.body, frame.html, { swapStyle: "none" });
      linksPrune();
      chartsRender(frame.charts);
      lastUpdate = new Date();
      errorBox.textContent = "";
      stateSet("live");
      staleTimerArm();
    } else if (frame.type === "alerts") {
      htmx.swap(document.body, frame.html, { swapStyle: "none" });
      linksPrune();
    } else if (frame.type === "degraded") {
      stateSet("stale");
      errorBox.textContent = frame.message;
    } else if (frame.type === "error") {
      errorBox.textContent = frame.message;
    }
  }

  function socketUrl() {
    const dashboard = document.getElementById("dashboard");
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    return scheme + location.host + dashboard.dataset.wsPath;
  }

  function connect() {
    clearTimeout(retryTimer);
    const current = new WebSocket(socketUrl());
    socket = current;
    // "live" only once the first view arrives: the server sends a full view on every
    // (re)connect, which is the resynchronisation.
    current.onopen = function () {
      attempt = 0;
    };
    current.onmessage = function (event) {
      if (current === socket) frameApply(JSON.parse(event.data));
    };
    current.onclose = function (event) {
      if (current !== socket) return; // replaced on purpose (window change)
      clearTimeout(staleTimer);
      if (PERMANENT_CLOSE_CODES.indexOf(event.code) !== -1) {
        stateSet("stale");
        return;
      }
      if (event.code === CLOSE_UNAVAILABLE) {
        stateSet("reconnecting", "server unavailable, retrying");
        retryTimer = setTimeout(connect, UNAVAILABLE_RETRY_MS * (1 + Math.random()));
        return;
      }
      stateSet("reconnecting");
      // Exponential backoff with jitter, so a restarted server is not hit by every TV at once.
      const delay = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * Math.pow(2, attempt));
      attempt += 1;
      retryTimer = setTimeout(connect, delay / 2 + Math.random() * delay / 2);
    };
  }

  function reconnectForNewScope() {
    const previous = socket;
    socket = null;
    if (previous) previous.close();
    attempt = 0;
    stateSet("connecting");
    chartsFromPage();
    connect();
  }

  document.body.addEventListener("htmx:afterSettle", function (event) {
    // The window selector swapped the whole dashboard region: new scope, new socket.
    if (event.target && event.target.id === "dashboard") reconnectForNewScope();
  });

  document.body.addEventListener("htmx:historyRestore", function () {
    // Back/forward after a window change: htmx restored an old copy of the page, live state
    // and all. Load it afresh instead (this script's references point at the replaced nodes).
    location.reload();
  });

  if (document.body.classList.contains("kiosk")) {
    // Browsers allow full screen only after a gesture: a double click (or a TV remote's OK).
    document.addEventListener("dblclick", function () {
      if (!document.fullscreenElement && document.documentElement.requestFullscreen) {
        document.documentElement.requestFullscreen();
      }
    });
  }

  if (root.dataset.rotateUrls) {
    const urls = root.dataset.rotateUrls.split(" ");
    const here = location.pathname + location.search;
    const next = urls[(urls.indexOf(here) + 1) % urls.length];
    setTimeout(function () {
      location.href = next;
    }, Number(root.dataset.rotateSeconds) * 1000);
  }

  const asOf = document.querySelector("#as-of time");
  lastUpdate = asOf ? new Date(asOf.getAttribute("datetime")) : new Date();
  chartsFromPage();
  stateSet("connecting");
  connect();
})();
