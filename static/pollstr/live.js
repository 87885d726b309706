// Progressive enhancement for the verification page. Everything works without it.
(function () {
  "use strict";
  // While the websocket is open the page gets pushes; polling only runs when it is not.
  document.addEventListener("htmx:wsOpen", function () { document.body.classList.add("ws-open"); });
  document.addEventListener("htmx:wsClose", function () { document.body.classList.remove("ws-open"); });
  document.addEventListener("htmx:wsError", function () { document.body.classList.remove("ws-open"); });

  // Clear the code input once a code was submitted, ready for the next try.
  document.addEventListener("htmx:afterRequest", function (event) {
    var form = event.target.closest && event.target.closest("form[data-reset-after-request]");
    if (form && event.detail.successful) { form.reset(); }
  });

  // A request that could not be answered must say so, not leave the page as it was.
  // 503 (database or Redis busy: pollstr/unavailable.py) carries a sentence to show; a
  // network failure gets ours. The element stays put, so screen readers announce it.
  function notice(text) {
    var box = document.getElementById("connection-notice");
    if (!box) {
      box = document.createElement("p");
      box.id = "connection-notice";
      box.className = "form-error";
      box.setAttribute("role", "status");
      box.setAttribute("aria-live", "polite");
      var main = document.querySelector("main") || document.body;
      main.insertBefore(box, main.firstChild);
    }
    box.textContent = text;
    box.hidden = !text;
  }
  document.addEventListener("htmx:beforeSwap", function (event) {
    var xhr = event.detail.xhr;
    if (xhr && xhr.status >= 500) {
      event.detail.shouldSwap = false;  // keep the form and what the voter typed
      var doc = new DOMParser().parseFromString(xhr.responseText || "", "text/html");
      var said = doc.querySelector(".service-unavailable");
      notice(said ? said.textContent.trim()
                  : "Something went wrong on our side. Please try again in a moment.");
    } else if (xhr && xhr.status < 400) {
      notice("");
    }
  });
  document.addEventListener("htmx:sendError", function () {
    notice("We couldn't reach the server. Check your connection; the page keeps trying.");
  });

  // Countdowns: <span data-countdown="SECONDS"> ticks down as m:ss.
  function format(seconds) {
    var m = Math.floor(seconds / 60), s = seconds % 60;
    return m + ":" + (s < 10 ? "0" : "") + s;
  }
  function arm(root) {
    (root.querySelectorAll ? root.querySelectorAll("[data-countdown]") : []).forEach(function (el) {
      var end = Date.now() + parseInt(el.getAttribute("data-countdown"), 10) * 1000;
      el.textContent = format(Math.max(0, Math.round((end - Date.now()) / 1000)));
      el.dataset.countdownEnd = String(end);
    });
  }
  setInterval(function () {
    document.querySelectorAll("[data-countdown-end]").forEach(function (el) {
      el.textContent = format(Math.max(0, Math.round((parseInt(el.dataset.countdownEnd, 10) - Date.now()) / 1000)));
    });
  }, 1000);
  document.addEventListener("DOMContentLoaded", function () { arm(document); });
  document.addEventListener("htmx:load", function (event) { arm(event.detail.elt); });
})();
