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

  const EVENTS = ["acquired", "refreshed", "released", "stolen", "expired"];

  /** Follow a lock event stream (Server-Sent Events). ``onEvent(data)`` gets each event's
   * JSON; ``onState(state)`` gets "open" at every (re)connection, "reconnecting", and
   * "unavailable" when the stream cannot be used (no EventSource, or the server refuses or
   * lacks the endpoint): the caller then polls. EventSource reconnects by itself after a
   * dropped connection and sends Last-Event-ID, so the server replays what was missed. */
  function watchEvents(url, onEvent, onState) {
    if (!window.EventSource) {
      onState("unavailable");
      return null;
    }
    const source = new EventSource(url);
    EVENTS.forEach((name) => source.addEventListener(name, (e) => {
      let data;
      try {
        data = JSON.parse(e.data);
      } catch (_) {
        return;
      }
      data.event = data.event || name;
      onEvent(data);
    }));
    // The server could not replay everything since our last event: start afresh.
    source.addEventListener("gap", () => onState("open"));
    source.onopen = () => onState("open");
    source.onerror = () => {
      onState(source.readyState === EventSource.CLOSED ? "unavailable" : "reconnecting");
    };
    return source;
  }

  /** The tabs of this browser that hold one lock, so that only the last one releases it.
   * Each holding tab keeps a timestamp under one localStorage key; a tab that crashed stops
   * updating and counts as gone after ``staleMs`` (well above the once-a-minute timers
   * Chrome allows a long-hidden tab). BroadcastChannel tells the other tabs what this one
   * did (saved, cancelled, closed) so they can say so. */
  function tabGroup(key, onMessage, staleMs) {
    const id = Math.random().toString(36).slice(2) + Date.now().toString(36);
    const storageKey = "demo-tabs:" + key;
    const stale = staleMs || 90000;
    const channel = window.BroadcastChannel ? new BroadcastChannel("demo-lock:" + key) : null;
    let timer = null;
    if (channel) channel.onmessage = (e) => onMessage(e.data || {});

    function read() {
      try {
        return JSON.parse(localStorage.getItem(storageKey) || "{}") || {};
      } catch (_) {
        return {};
      }
    }
    function write(tabs) {
      try {
        if (Object.keys(tabs).length) localStorage.setItem(storageKey, JSON.stringify(tabs));
        else localStorage.removeItem(storageKey);
      } catch (_) { /* storage full or disabled: every tab then counts as the last */ }
    }
    function touch() {
      const tabs = read();
      tabs[id] = Date.now();
      write(tabs);
    }
    /** The other live tabs holding the lock. */
    function others() {
      const tabs = read();
      const now = Date.now();
      return Object.keys(tabs).filter((t) => t !== id && now - tabs[t] < stale);
    }
    return {
      id: id,
      others: others,
      join() {
        touch();
        clearInterval(timer);
        timer = setInterval(touch, 1000);
      },
      /** Stop holding; true when no other tab of this browser still holds the lock. */
      leave() {
        clearInterval(timer);
        timer = null;
        const tabs = read();
        delete tabs[id];
        write(tabs);
        return others().length === 0;
      },
      tell(message) {
        if (channel) channel.postMessage(Object.assign({ tab: id }, message));
      },
    };
  }

  window.demo = {
    now, clock, until, countdown, refreshTimes, api, errorMessage, escapeHtml,
    watchEvents, tabGroup,
  };

  document.addEventListener("DOMContentLoaded", () => {
    refreshTimes();
    // The document page's Edit link carries ?stealable=0 only when the box is ticked.
    const edit = document.getElementById("edit");
    const noTakeover = document.getElementById("no-takeover");
    if (edit && noTakeover) {
      const sync = () => {
        edit.href = noTakeover.checked ? edit.dataset.noTakeover : edit.dataset.plain;
      };
      noTakeover.addEventListener("change", sync);
      sync();
    }
  });
  setInterval(() => refreshTimes(), 1000);
})();
