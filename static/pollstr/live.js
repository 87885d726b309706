// Progressive enhancement for the verification page. Everything works without it.
(function () {
  "use strict";
  // While the websocket is open the page gets pushes; polling only runs when it is not,
  // and #live-notice (base.html) says so once the socket has been gone a few seconds (a
  // reconnect in passing says nothing). The server refuses sockets while Redis is down.
  // The page's own sentences come in the page's language from base.html (data-text-* on
  // <body>); the English here is only a fallback.
  function text(name, fallback) {
    return (document.body && document.body.getAttribute("data-text-" + name)) || fallback;
  }
  var LIVE_LOST = text("live-lost", "Live updates are paused: this page checks for changes every few seconds.");
  // htmx retries a lost socket with a jittered back-off that grows to a minute; capped at
  // 8 s here, so the page is live again within seconds of the server being back.
  if (window.htmx) {
    window.htmx.config.wsReconnectDelay = function (retryCount) {
      var cap = Math.min(1000 * Math.pow(2, retryCount), 8000);
      return cap / 2 + Math.random() * cap / 2;
    };
  }
  var liveTimer = null;
  function liveNotice(text) {
    var box = document.getElementById("live-notice");
    if (box && box.textContent !== text) { box.textContent = text; }
  }
  function liveLost(afterMs) {
    document.body.classList.remove("ws-open");
    if (liveTimer) { return; }
    liveTimer = setTimeout(function () {
      liveTimer = null;
      if (!document.body.classList.contains("ws-open") && document.querySelector("[ws-connect]")) {
        liveNotice(LIVE_LOST);
      }
    }, afterMs);
  }
  document.addEventListener("htmx:wsOpen", function () {
    document.body.classList.add("ws-open");
    if (liveTimer) { clearTimeout(liveTimer); liveTimer = null; }
    liveNotice("");
  });
  // The server closes with 4013 ("try again later", two_factor/consumers.py) while Redis
  // is down; htmx does not retry that code by itself, so the page does.
  var TRY_AGAIN = 4013;
  var retryTry = 0;
  document.addEventListener("htmx:wsOpen", function () { retryTry = 0; });
  document.addEventListener("htmx:wsClose", function (event) {
    liveLost(3000);
    var closed = event.detail && event.detail.event;
    var socket = event.detail && event.detail.socketWrapper;
    if (closed && closed.code === TRY_AGAIN && socket && socket.reconnect) {
      retryTry += 1;
      var cap = Math.min(1000 * Math.pow(2, retryTry), 8000);
      setTimeout(socket.reconnect, cap / 2 + Math.random() * cap / 2);
    }
  });
  document.addEventListener("htmx:wsError", function () { liveLost(3000); });
  // A socket that never opens (refused before any event) is lost too.
  document.addEventListener("DOMContentLoaded", function () {
    if (document.querySelector("[ws-connect]")) { liveLost(5000); }
  });

  function codeFormOf(elt) {
    return elt && elt.closest ? elt.closest("form[data-code-form]") : null;
  }

  // --- A request that could not be answered says so -------------------------------------
  // 503 (database or Redis busy: pollstr/unavailable.py) carries a sentence to show; a
  // network failure gets ours. #connection-notice (base.html) is a live region present
  // from the start, so screen readers announce what appears in it.
  var UNREACHABLE = text("unreachable", "We couldn't reach the server. Check your connection; the page keeps trying.");
  var UNREACHABLE_CODE = text("unreachable-code", "We couldn't reach the server. We'll send your code again as soon as the connection is back.");

  function notice(text) {
    var box = document.getElementById("connection-notice");
    if (box) { box.textContent = text; }
  }

  // --- A code the server never got is sent again ------------------------------------------
  // Safe to repeat: the server serialises code submissions on the verification row, so a
  // copy that arrives after the first one is answered "still checking", never counted twice.
  var retry = { timer: null, delay: 0 };

  function retryCancel() {
    if (retry.timer) { clearTimeout(retry.timer); }
    retry.timer = null;
    retry.delay = 0;
  }
  function retryNow() {
    if (retry.timer) { clearTimeout(retry.timer); }
    retry.timer = null;
    var form = document.getElementById("code-form");
    var input = document.getElementById("id_code");
    if (!form || !input || !input.value) { retryCancel(); return; }  // nothing left to send
    form.requestSubmit();
  }
  function retryLater(seconds) {
    retry.delay = seconds ? seconds * 1000 : Math.min(5000, Math.max(1000, retry.delay * 2));
    if (retry.timer) { clearTimeout(retry.timer); }
    retry.timer = setTimeout(retryNow, retry.delay);
  }
  window.addEventListener("online", function () { if (retry.timer) { retryNow(); } });

  document.addEventListener("htmx:sendError", function (event) {
    if (codeFormOf(event.detail.elt)) {
      notice(UNREACHABLE_CODE);
      retryLater(0);
    } else {
      notice(UNREACHABLE);
    }
  });
  // --- An older state never replaces a newer one -------------------------------------------
  // Every status fragment carries its version (#verification-status[data-version], its
  // newest audit event). Pushes and answers travel apart: the worker's verdict on a code
  // can reach the page over the websocket before the answer to the code's own submission
  // ("Checking your code…"), which must not then put the older state back.
  var VERSION = /id="verification-status"[^>]*\sdata-version="(\d+)"/;
  function olderThanShown(html) {
    var found = VERSION.exec(html || "");
    var status = document.getElementById("verification-status");
    if (!found || !status) { return false; }
    return parseInt(found[1], 10) < (parseInt(status.getAttribute("data-version") || "0", 10) || 0);
  }
  document.addEventListener("htmx:wsBeforeMessage", function (event) {
    if (olderThanShown(event.detail.message)) { event.preventDefault(); }
  });

  document.addEventListener("htmx:beforeSwap", function (event) {
    var xhr = event.detail.xhr;
    if (!xhr) { return; }
    if (xhr.status < 400 && olderThanShown(xhr.responseText)) {
      event.detail.shouldSwap = false;  // answered, and already overtaken
      notice("");
      if (codeFormOf(event.detail.elt)) { retryCancel(); }
      return;
    }
    if (xhr.status >= 500) {
      event.detail.shouldSwap = false;  // keep the form and what the voter typed
      var doc = new DOMParser().parseFromString(xhr.responseText || "", "text/html");
      var said = doc.querySelector(".service-unavailable");
      notice(said ? said.textContent.trim()
                  : text("server-error", "Something went wrong on our side. Please try again in a moment."));
      var busy = xhr.status === 502 || xhr.status === 503 || xhr.status === 504;
      if (busy && codeFormOf(event.detail.elt)) {
        retryLater(parseInt(xhr.getResponseHeader("Retry-After") || "0", 10) || 0);
      }
    } else if (xhr.status >= 400) {
      notice(text("refused", "That didn't work. Reload the page and try again."));
    } else {
      notice("");
      if (codeFormOf(event.detail.elt)) { retryCancel(); }
    }
  });

  // --- A code is submitted once -------------------------------------------------------------
  // When as many digits as the code has are typed (or the browser read them from the SMS),
  // the form goes by itself. A second submission of the same code while the server is
  // checking it, or after it passed, is dropped (hx-sync drops one made while the first
  // is on its way); a retry after a lost request still goes, as the server never had it.
  var submitted = { value: null };

  function codeDigits(input) {
    return /^[0-9\s-]*$/.test(input.value) ? input.value.replace(/[^0-9]/g, "") : "";
  }
  function submitWhenComplete(input) {
    var form = codeFormOf(input);
    var length = parseInt(input.getAttribute("data-code-length") || "0", 10);
    if (form && length && codeDigits(input).length === length) { form.requestSubmit(); }
  }
  document.addEventListener("input", function (event) {
    if (event.target && event.target.id === "id_code") { submitWhenComplete(event.target); }
  });
  document.addEventListener("htmx:beforeRequest", function (event) {
    var form = codeFormOf(event.detail.elt);
    var input = document.getElementById("id_code");
    if (!form || !input) { return; }
    var status = document.getElementById("verification-status");
    var state = status ? status.getAttribute("data-status") : "";
    var settled = state === "checking" || state === "verified" || state === "consumed";
    if (settled && input.value === submitted.value) { event.preventDefault(); return; }
    submitted.value = input.value;
    webOtpStop();
  });

  // --- WebOTP: the browser reads the code from the SMS --------------------------------------
  // Where the browser offers it (Chrome on Android), the SMS's last line "@<host> #<code>"
  // lets it hand the code to this page: it fills the field and the form goes. Anything
  // else (no support, the voter declined, no SMS) is silent: typing works as ever. A code
  // the voter submits first stops the wait.
  var otp = null;

  function webOtpStart() {
    if (otp || !document.getElementById("code-form") || !("OTPCredential" in window) ||
        !window.AbortController || !navigator.credentials) { return; }
    otp = new AbortController();
    try {
      navigator.credentials.get({ otp: { transport: ["sms"] }, signal: otp.signal })
        .then(function (credential) {
          var input = document.getElementById("id_code");
          if (!credential || !credential.code || !input) { return; }
          input.value = credential.code;
          submitWhenComplete(input);
        })
        .catch(function () {});
    } catch (error) { /* an old browser's half support: typing it is */ }
  }
  function webOtpStop() {
    if (otp) { otp.abort(); }
  }

  // --- The server's verdict on the code is an error on the field ----------------------------
  // The input survives swaps (hx-preserve keeps what the voter types), so the server's
  // verdict, carried by #verification-status[data-code-error], is copied onto it here. A
  // wrong code clears the field and puts the cursor back in it once per verdict; a
  // malformed one stays in the field, to fix.
  function syncCodeField() {
    var status = document.getElementById("verification-status");
    var input = document.getElementById("id_code");
    if (!status || !input) { return; }
    var verdict = status.getAttribute("data-code-error");
    var wrong = status.getAttribute("data-wrong-code");
    if (verdict) {
      input.setAttribute("aria-invalid", "true");
      input.setAttribute("aria-describedby", "id_code_helptext id_code_error");
    } else {
      input.removeAttribute("aria-invalid");
      input.setAttribute("aria-describedby", "id_code_helptext");
    }
    if (wrong && input.getAttribute("data-wrong-seen") !== wrong) {
      input.setAttribute("data-wrong-seen", wrong);
      input.value = "";
      input.focus();
    } else if (verdict === "malformed" && !status.hasAttribute("data-verdict-seen")) {
      status.setAttribute("data-verdict-seen", "");  // this section's verdict, once
      input.focus();
    }
  }

  // --- Focus never drops to the page -------------------------------------------------------
  // A swap that removes the focused element (the code form, once the third wrong code
  // ends the request) leaves focus on <body>; put it on the next thing to do instead.
  // focusBefore is what had focus when the latest swap began: never <body> (nothing to
  // give back), and never noted for a swap that will not happen (an older state refused
  // above, an error answer): no after-event would clear it, and the next swap would then
  // restore a stale focus, or none.
  // A swap's after-event does not always reach the document: htmx fires it on the
  // element it swapped out (the section) or on the element that asked (the code form),
  // and a detached element's events go nowhere. So every swap that begins also checks
  // once it is done (swaps are synchronous: a zero timeout runs after them).
  var focusBefore = null;

  function noteFocus(event) {
    var detail = event.detail || {};
    if (event.defaultPrevented || detail.shouldSwap === false) { return; }
    var active = document.activeElement;
    if (active && active !== document.body) {
      focusBefore = active;
      setTimeout(keepFocus, 0);
    }
  }
  function keepFocus() {
    var before = focusBefore;
    focusBefore = null;
    if (!before || before === document.body || document.activeElement !== document.body) { return; }
    // After htmx has finished with the swap (it settles the new content afterwards).
    setTimeout(function () {
      if (document.activeElement !== document.body) { return; }
      var next = document.contains(before) ? before
        : document.getElementById("id_code") ||
          document.querySelector("#verification-status [data-next-action]") ||
          document.getElementById("status-heading");
      if (next) { next.focus(); }
    }, 0);
  }

  // --- Time on the page: countdowns and what waits for them --------------------------------
  // [data-countdown=S] ticks down as m:ss; at 0 the closest [data-at-zero] says its text.
  // [data-show-in=S] appears after S seconds (server-hidden or .until-countdown);
  // [data-hide-in=S] disappears after S seconds.
  function format(seconds) {
    var m = Math.floor(seconds / 60), s = seconds % 60;
    return m + ":" + (s < 10 ? "0" : "") + s;
  }
  function within(root, selector) {
    var found = root.querySelectorAll ? Array.prototype.slice.call(root.querySelectorAll(selector)) : [];
    if (root.matches && root.matches(selector)) { found.unshift(root); }
    return found;
  }
  function arm(root) {
    within(root, "[data-countdown], [data-show-in], [data-hide-in]").forEach(function (el) {
      var seconds = parseInt(el.getAttribute("data-countdown") || el.getAttribute("data-show-in") ||
                             el.getAttribute("data-hide-in"), 10) || 0;
      el.setAttribute("data-ends-at", String(Date.now() + seconds * 1000));
    });
    tick();
  }
  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-ends-at]").forEach(function (el) {
      var left = Math.max(0, Math.round((parseInt(el.getAttribute("data-ends-at"), 10) - now) / 1000));
      if (el.hasAttribute("data-countdown")) {
        el.textContent = format(left);
        var line = left === 0 && el.closest("[data-at-zero]");
        if (line) { line.textContent = line.getAttribute("data-at-zero"); }
      }
      if (left > 0) { return; }
      el.removeAttribute("data-ends-at");
      if (el.hasAttribute("data-show-in")) {
        el.hidden = false;
        el.classList.remove("until-countdown");
        // Disabled for pages without JavaScript, which show it during the wait.
        el.querySelectorAll("button[disabled]").forEach(function (button) { button.disabled = false; });
      }
      if (el.hasAttribute("data-hide-in")) { el.hidden = true; }
    });
  }
  setInterval(tick, 1000);

  document.addEventListener("DOMContentLoaded", function () {
    arm(document);
    syncCodeField();
    webOtpStart();
  });
  document.addEventListener("htmx:load", function (event) { arm(event.detail.elt); });
  ["htmx:beforeSwap", "htmx:oobBeforeSwap", "htmx:wsBeforeMessage"].forEach(function (name) {
    document.addEventListener(name, noteFocus);
  });
  ["htmx:afterSettle", "htmx:oobAfterSwap", "htmx:wsAfterMessage"].forEach(function (name) {
    document.addEventListener(name, function () {
      syncCodeField();
      keepFocus();
      webOtpStart();
    });
  });
})();
