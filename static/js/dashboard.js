// Live dashboard client: one WebSocket per page, state in data-live-state on #live-root.
// Frames from the server (dashboards/live.py):
//   {type: "view", html, charts, as_of}  htmx out-of-band fragments + Plotly figures
//   {type: "alerts", html}                the alerts panel only
//   {type: "degraded", message}           the server could not compute: show "stale"
//   {type: "error", message}              bad request; the server closes the socket
//   {type: "unavailable", message}        the database or Redis is away; closed with 4503
//   {type: "pong"}                        answer to our {"type": "ping"} heartbeat
//   {type: "signed_out", message}         the session ended; closed with 4401
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
  // A socket can look open while nothing arrives (network gone, server frozen): ping every
  // 1.5 s and call the connection lost after 3.5 s of silence, so a TV shows it within 5 s.
  const HEARTBEAT_MS = 1500;
  const SILENCE_LOST_MS = 3500;
  const CONNECT_TIMEOUT_MS = 5000;
  const CLOSE_SIGNED_OUT = 4401;
  const LOGIN_RETURN_MS = 5000;
  const banner = document.getElementById("offline-banner");

  let socket = null;
  let attempt = 0;
  let retryTimer = null;
  let staleTimer = null;
  let lastUpdate = null; // when the shown numbers were last known good
  let lastHeard = Date.now(); // when the current socket last said anything
  let signedOut = false;

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
    bannerSet(state);
  }

  function bannerSet(state) {
    if (!banner) return;
    if (signedOut) {
      banner.textContent = "Signed out: these numbers stopped updating at " + clock(lastUpdate) +
        ". Returning to the login page…";
    } else if (state === "reconnecting" || state === "stale") {
      banner.textContent = "OFFLINE: not updating since " + clock(lastUpdate) + ". Reconnecting…";
    } else {
      banner.textContent = "";
    }
  }

  function signedOutShow() {
    if (signedOut) return;
    signedOut = true;
    root.dataset.session = "ended";
    clearTimeout(retryTimer);
    clearTimeout(staleTimer);
    stateSet("stale", "signed out");
    setTimeout(function () {
      location.href = "/accounts/login/?next=" + encodeURIComponent(location.pathname + location.search);
    }, LOGIN_RETURN_MS);
  }

  // A refused handshake (403: no session) looks like any failed connection to a browser.
  // Ask the page itself, without following redirects and without computing it (HEAD is
  // refused by the view, 405, but only after the login check): a redirect means signed out.
  function sessionCheck() {
    return fetch(location.pathname + location.search, {
      method: "HEAD",
      redirect: "manual",
      credentials: "same-origin",
      cache: "no-store",
    }).then(function (response) {
      if (response.type === "opaqueredirect") signedOutShow();
    }, function () {
      // The server is unreachable: the retry loop goes on.
    });
  }

  // Large values are shortened on the server (234.1k); a long one that still does not fit
  // shrinks until it does, so no tile is ever cut.
  function tileValuesFit() {
    document.querySelectorAll(".tile-value").forEach(function (element) {
      element.style.fontSize = "";
      let size = parseFloat(getComputedStyle(element).fontSize);
      const smallest = size * 0.45;
      while (element.scrollWidth > element.clientWidth && size > smallest) {
        size *= 0.9;
        element.style.fontSize = size + "px";
      }
    });
  }

  function staleTimerArm() {
    clearTimeout(staleTimer);
    staleTimer = setTimeout(function () {
      if (root.dataset.liveState === "live") stateSet("stale");
    }, staleAfterMs);
  }

  // Instants come in UTC with their offset; people read them in their own time zone, named.
  const zoneName = (new Intl.DateTimeFormat(undefined, { timeZoneName: "short" })
    .formatToParts(new Date()).find(function (part) { return part.type === "timeZoneName"; }) || {}).value || "local";

  function pad(number) {
    return String(number).padStart(2, "0");
  }

  function localWallTime(text) {
    const moment = new Date(text);
    if (isNaN(moment)) return text;
    return moment.getFullYear() + "-" + pad(moment.getMonth() + 1) + "-" + pad(moment.getDate()) + " " +
      pad(moment.getHours()) + ":" + pad(moment.getMinutes()) + ":" + pad(moment.getSeconds());
  }

  function inViewerTime(figure) {
    if (!figure.layout || !figure.layout.meta || !figure.layout.meta.local_times) return figure;
    const data = figure.data.map(function (trace) {
      return Object.assign({}, trace, { x: (trace.x || []).map(localWallTime) });
    });
    const xaxis = Object.assign({}, figure.layout.xaxis, { title: { text: "Time (your time, " + zoneName + ")" } });
    return { data: data, layout: Object.assign({}, figure.layout, { xaxis: xaxis }) };
  }

  // plotly.js (1.2 MB) runs only once the tiles are live (or after PLOTLY_LATEST_MS without a
  // live view, or at once on a frozen page): figures that come before it are kept, the latest
  // only, and drawn when it has loaded.
  const PLOTLY_LATEST_MS = 3000;
  let chartsWaiting = null;
  let plotlyRequested = false;

  function plotlyLoad() {
    const preload = document.getElementById("plotly-js");
    if (plotlyRequested || window.Plotly || !preload) return;
    plotlyRequested = true;
    const script = document.createElement("script");
    script.src = preload.href;
    script.onload = function () {
      const figures = chartsWaiting;
      chartsWaiting = null;
      chartsRender(figures);
    };
    document.head.appendChild(script);
  }

  function chartsRender(figures) {
    if (!figures) return;
    if (!window.Plotly) {
      chartsWaiting = figures;
      return;
    }
    Object.keys(figures).forEach(function (id) {
      const element = document.getElementById(id);
      const figure = inViewerTime(figures[id]);
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
    if (frame.type === "pong") {
      return;
    } else if (frame.type === "signed_out") {
      signedOutShow();
    } else if (frame.type === "view") {
      htmx.swap(document.body, frame.html, { swapStyle: "none" });
      linksPrune();
      tileValuesFit();
      chartsRender(frame.charts);
      lastUpdate = new Date();
      errorBox.textContent = "";
      stateSet("live");
      staleTimerArm();
      plotlyLoad();
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

  function connectionLost(current, why) {
    // Called for a closed socket or one gone silent: retry with backoff.
    clearTimeout(staleTimer);
    if (signedOut) return;
    stateSet("reconnecting", why);
    const delay = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * Math.pow(2, attempt));
    attempt += 1;
    retryTimer = setTimeout(connect, delay / 2 + Math.random() * delay / 2);
  }

  function connect() {
    clearTimeout(retryTimer);
    if (signedOut) return;
    const current = new WebSocket(socketUrl());
    let opened = false;
    socket = current;
    lastHeard = Date.now();
    // "live" only once the first view arrives: the server sends a full view on every
    // (re)connect, which is the resynchronisation.
    current.onopen = function () {
      attempt = 0;
      opened = true;
      lastHeard = Date.now();
    };
    current.onmessage = function (event) {
      if (current !== socket) return;
      lastHeard = Date.now();
      frameApply(JSON.parse(event.data));
    };
    current.onclose = function (event) {
      if (current !== socket) return; // replaced on purpose (window change) or gone silent
      clearTimeout(staleTimer);
      if (event.code === CLOSE_SIGNED_OUT) {
        signedOutShow();
        return;
      }
      if (!opened) sessionCheck();
      if (PERMANENT_CLOSE_CODES.indexOf(event.code) !== -1) {
        stateSet("stale");
        return;
      }
      if (event.code === CLOSE_UNAVAILABLE) {
        stateSet("reconnecting", "server unavailable, retrying");
        retryTimer = setTimeout(connect, UNAVAILABLE_RETRY_MS * (1 + Math.random()));
        return;
      }
      // Exponential backoff with jitter, so a restarted server is not hit by every TV at once.
      connectionLost(current);
    };
  }

  setInterval(function () {
    const current = socket;
    if (!current || current.readyState > WebSocket.OPEN) return;
    // A handshake a frozen server never answers counts as silence too (after a little longer).
    const silenceAllowed = current.readyState === WebSocket.OPEN ? SILENCE_LOST_MS : CONNECT_TIMEOUT_MS;
    if (Date.now() - lastHeard > silenceAllowed) {
      socket = null; // its close event, if it ever comes, is ignored
      current.close();
      connectionLost(current, "connection lost, reconnecting");
      sessionCheck();
      return;
    }
    if (current.readyState === WebSocket.OPEN) current.send(JSON.stringify({ type: "ping" }));
  }, HEARTBEAT_MS);

  window.addEventListener("offline", function () {
    const current = socket;
    if (!current || signedOut) return;
    socket = null;
    current.close();
    connectionLost(current, "network offline, reconnecting");
  });

  function reconnectForNewScope() {
    const previous = socket;
    socket = null;
    if (previous) previous.close();
    attempt = 0;
    stateSet("connecting");
    chartsFromPage();
    tileValuesFit();
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
  tileValuesFit();
  window.addEventListener("resize", tileValuesFit);
  if (root.dataset.frozenAt) {
    // A past instant (?as_of=): nothing to follow, no socket; "Back to live" leaves it.
    badge.textContent = "Not live: as it was at " + new Date(root.dataset.frozenAt).toLocaleString();
    plotlyLoad();
    return;
  }
  stateSet("connecting");
  connect();
  setTimeout(plotlyLoad, PLOTLY_LATEST_MS);
})();

// The time control: the viewer picks a local date and time; the page asks the server for
// that instant with the viewer's UTC offset (?as_of=2026-12-06T14:05:00+01:00), a link that
// means the same instant to whoever opens it.
(function () {
  "use strict";
  function pad(number) {
    return String(Math.abs(number)).padStart(2, "0");
  }

  function isoWithOffset(moment) {
    const minutes = -moment.getTimezoneOffset();
    const sign = minutes >= 0 ? "+" : "-";
    return moment.getFullYear() + "-" + pad(moment.getMonth() + 1) + "-" + pad(moment.getDate()) +
      "T" + pad(moment.getHours()) + ":" + pad(moment.getMinutes()) + ":" + pad(moment.getSeconds()) +
      sign + pad(Math.floor(Math.abs(minutes) / 60)) + ":" + pad(Math.abs(minutes) % 60);
  }

  function localInputValue(moment) {
    return isoWithOffset(moment).slice(0, 19);
  }

  function controlSetUp() {
    const form = document.getElementById("time-travel");
    if (!form || form.dataset.ready) return;
    form.dataset.ready = "1";
    const picker = form.querySelector("[data-as-of-local]");
    const param = form.querySelector("#as-of-param");
    const frozenAt = document.getElementById("live-root").dataset.frozenAt;
    picker.max = localInputValue(new Date());
    if (frozenAt) picker.value = localInputValue(new Date(frozenAt));
    form.addEventListener("submit", function (event) {
      const moment = picker.value ? new Date(picker.value) : null;
      if (!moment || isNaN(moment)) {
        event.preventDefault();
        picker.setCustomValidity("Pick a date and time");
        picker.reportValidity();
        return;
      }
      param.value = isoWithOffset(moment);
    });
    picker.addEventListener("input", function () {
      picker.setCustomValidity("");
    });
  }

  document.addEventListener("DOMContentLoaded", controlSetUp);
  document.addEventListener("htmx:afterSettle", controlSetUp);
})();
