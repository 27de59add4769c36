// The order page's "time left for approval", counted down in the browser between the server's
// updates: the page polls only for changes (the server answers 204 while nothing changed), so
// the seconds tick here. Each [data-countdown] element holds the seconds left when the server
// rendered it; a fresh element (after an htmx swap) starts again from its own value.
(function () {
  "use strict";

  // The same wording as the server's `duration` filter (orders/templatetags/order_tags.py).
  function format(seconds) {
    var whole = Math.max(Math.floor(seconds), 0);
    var minutes = Math.floor(whole / 60);
    var rest = whole % 60;
    if (minutes) {
      return minutes + " min " + (rest < 10 ? "0" : "") + rest + " s";
    }
    return rest + " s";
  }

  function tick() {
    var now = performance.now();
    document.querySelectorAll("[data-countdown]").forEach(function (element) {
      if (element.countdownStartedAt === undefined) {
        element.countdownStartedAt = now;
        element.countdownFrom = parseFloat(element.dataset.countdown);
      }
      var left = element.countdownFrom - (now - element.countdownStartedAt) / 1000;
      var text = format(left);
      if (element.textContent !== text) {
        element.textContent = text;
      }
    });
  }

  setInterval(tick, 250);
  document.addEventListener("DOMContentLoaded", tick);
})();
