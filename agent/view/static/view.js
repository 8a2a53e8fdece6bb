// Cordon crisis-cell view: replace the board when the daemon pushes a new one (server-sent
// events; the browser reconnects by itself), and count the regulatory clocks down every second
// against the daemon's clock (the wall screen's own clock may be wrong). Read-only: no request
// here changes anything.
"use strict";
(function () {
  var skew = 0; // daemon time - this screen's time, in seconds
  var clockEl = document.getElementById("clock");
  var live = document.getElementById("live");
  var board = document.getElementById("board");

  function setSkew(serverNow) {
    if (typeof serverNow === "number") { skew = serverNow - Date.now() / 1000; }
  }
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function span(s) {
    var neg = s < 0; s = Math.abs(Math.floor(s));
    var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600);
    var m = Math.floor(s % 3600 / 60), sec = s % 60;
    var text = (d ? d + "d " : "") + pad(h) + ":" + pad(m) + ":" + pad(sec);
    return neg ? "+" + text : text;
  }
  function tick() {
    var now = Date.now() / 1000 + skew;
    if (clockEl) {
      var t = new Date(now * 1000);
      clockEl.textContent = pad(t.getUTCDate()) + "/" + pad(t.getUTCMonth() + 1) + " " +
        pad(t.getUTCHours()) + ":" + pad(t.getUTCMinutes()) + ":" + pad(t.getUTCSeconds()) + " UTC";
    }
    var soaks = document.querySelectorAll(".countdown[data-due-epoch]");
    for (var j = 0; j < soaks.length; j++) {
      var end = parseFloat(soaks[j].getAttribute("data-due-epoch"));
      if (!isNaN(end)) {
        soaks[j].textContent = end > now ? span(end - now) + " left" : "ending now";
      }
    }
    var cells = document.querySelectorAll(".countdown[data-due]");
    for (var i = 0; i < cells.length; i++) {
      var due = Date.parse(cells[i].getAttribute("data-due")) / 1000;
      if (isNaN(due)) { continue; }
      var left = due - now;
      var row = cells[i].parentElement;
      if (left > 0) {
        cells[i].textContent = span(left) + " left";
        row.classList.toggle("clock-soon", left < 3600);
      } else {
        cells[i].textContent = "OVERDUE " + span(left);
        row.classList.remove("clock-pending", "clock-soon");
        row.classList.add("clock-overdue");
      }
    }
  }
  function state(cls, text) { live.className = "live " + cls; live.textContent = text; }

  setSkew(parseFloat(clockEl && clockEl.getAttribute("data-now")));
  tick();
  setInterval(tick, 1000);
  if (!window.EventSource) { state("live-off", "no live updates (reload)"); return; }
  var source = new EventSource("/view/events");
  source.addEventListener("open", function () { state("live-on", "live"); });
  source.addEventListener("error", function () { state("live-off", "reconnecting…"); });
  source.addEventListener("board", function (ev) {
    var msg = JSON.parse(ev.data);
    if (msg.digest !== board.getAttribute("data-digest")) {
      board.innerHTML = msg.html; // rendered and escaped by the daemon's templates
      board.setAttribute("data-digest", msg.digest);
    }
    setSkew(msg.now);
    board.setAttribute("data-updated", String(msg.now));
    state("live-on", "live");
    tick();
  });
  source.addEventListener("stale", function (ev) {
    state("live-off", "STATE UNAVAILABLE: " + JSON.parse(ev.data).why);
  });
  source.addEventListener("tick", function (ev) { setSkew(parseFloat(ev.data)); });
  source.addEventListener("signed-out", function () {
    source.close();
    state("live-off", "signed out: open the link again");
  });
})();
