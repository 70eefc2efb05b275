/* Shared helpers: a JSON fetch wrapper and live "since"/"expires in" times.
 * Times on the page are epoch seconds on the server's clock; the page learns the offset
 * between the server's clock and this browser's from data-server-now on <body>. */
(function () {
  "use strict";

  const rendered = parseFloat(document.body.dataset.serverNow) * 1000;
  const offset = Number.isFinite(rendered) ? rendered - Date.now() : 0;

  /** The server's clock now, in milliseconds. */
  function now() {
    return Date.now() + offset;
  }

  function pad(n) {
    return String(n).padStart(2, "0");
  }

  /** "10:02" (or "10:02:07" with seconds) in the browser's time zone. */
  function clock(epochSeconds, seconds) {
    const d = new Date(epochSeconds * 1000);
    const hm = pad(d.getHours()) + ":" + pad(d.getMinutes());
    return seconds ? hm + ":" + pad(d.getSeconds()) : hm;
  }

  /** "expires in 7 min" / "expires in 42 s" / "expired". */
  function until(epochSeconds) {
    const s = Math.ceil((epochSeconds * 1000 - now()) / 1000);
    if (s <= 0) return "expired";
    if (s >= 120) return "expires in " + Math.round(s / 60) + " min";
    return "expires in " + s + " s";
  }

  /** "9:58" left. */
  function countdown(epochSeconds) {
    const s = Math.max(0, Math.ceil((epochSeconds * 1000 - now()) / 1000));
    return Math.floor(s / 60) + ":" + pad(s % 60);
  }

  function dateAndClock(epochSeconds) {
    const d = new Date(epochSeconds * 1000);
    const today = new Date(now());
    const sameDay = d.toDateString() === today.toDateString();
    return (sameDay ? "today" : d.toLocaleDateString()) + " " + clock(epochSeconds);
  }

  /** Fill every <time data-clock|data-until|data-epoch> on the page. */
  function refreshTimes(root) {
    (root || document).querySelectorAll("time[data-clock]").forEach((t) => {
      t.textContent = clock(parseFloat(t.dataset.clock), t.hasAttribute("data-seconds"));
    });
    (root || document).querySelectorAll("time[data-until]").forEach((t) => {
      t.textContent = until(parseFloat(t.dataset.until));
    });
    (root || document).querySelectorAll("time[data-epoch]").forEach((t) => {
      if (!t.textContent) t.textContent = dateAndClock(parseFloat(t.dataset.epoch));
    });
  }

  /** fetch() with JSON in and out. Resolves to {status, ok, data, headers}; a network
   * failure resolves to status 0 so callers handle one shape. */
  async function api(method, url, options) {
    const opts = options || {};
    const headers = Object.assign({ Accept: "application/json" }, opts.headers || {});
    if (opts.body !== undefined) headers["Content-Type"] = "application/json";
    if (opts.token) headers["Lock-Token"] = opts.token;
    let response;
    try {
      response = await fetch(url, {
        method: method,
        headers: headers,
        body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
        credentials: opts.credentials || "same-origin",
        keepalive: Boolean(opts.keepalive),
      });
    } catch (error) {
      return { status: 0, ok: false, data: null, headers: new Headers(), error: String(error) };
    }
    let data = null;
    const text = await response.text();
    if (text) {
      try {
        data = JSON.parse(text);
      } catch (_) {
        data = { raw: text };
      }
    }
    return { status: response.status, ok: response.ok, data: data, headers: response.headers };
  }

  /** The human message of an error body in any of the app's formats. */
  function errorMessage(result) {
    const d = result.data || {};
    if (d.error && d.error.message) return d.error.message;
    if (d.status === "error") return d.message + (d.details ? ": " + d.details : "");
    if (result.status === 0) return "The server cannot be reached.";
    return "HTTP " + result.status;
  }

  function escapeHtml(text) {
    const div = document.createElement("div");
    div.textContent = text == null ? "" : String(text);
    return div.innerHTML;
  }

  window.demo = {
    now, clock, until, countdown, refreshTimes, api, errorMessage, escapeHtml,
  };

  document.addEventListener("DOMContentLoaded", () => refreshTimes());
  setInterval(() => refreshTimes(), 1000);
})();
