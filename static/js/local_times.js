// Times for people: every <time data-local datetime="..."> (the server writes it in UTC) is
// shown in the reader's own time zone, named ("CET"), with how long ago it was; its title keeps
// the UTC form.
(function () {
  "use strict";
  const format = new Intl.DateTimeFormat(undefined, {
    weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit", second: "2-digit",
    timeZoneName: "short",
  });

  function ago(seconds) {
    if (seconds < 60) return "just now";
    if (seconds < 3600) return Math.round(seconds / 60) + " min ago";
    if (seconds < 86400) return (seconds / 3600).toFixed(1) + " h ago";
    return (seconds / 86400).toFixed(1) + " d ago";
  }

  function localTimesApply() {
    document.querySelectorAll("time[data-local]").forEach(function (element) {
      const moment = new Date(element.getAttribute("datetime"));
      if (isNaN(moment)) return;
      if (!element.title) element.title = element.textContent;
      const seconds = (Date.now() - moment.getTime()) / 1000;
      element.textContent = format.format(moment) + (seconds >= 0 ? " (" + ago(seconds) + ")" : "");
    });
  }

  window.localTimesApply = localTimesApply;
  document.addEventListener("DOMContentLoaded", localTimesApply);
  document.addEventListener("htmx:afterSettle", localTimesApply);
  setInterval(localTimesApply, 30000);
})();
