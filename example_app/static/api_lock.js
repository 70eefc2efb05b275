/* Jobs and reference data: lock, save with the token, unlock, through the job-lock and
 * the JWT reference-lock APIs. Every request and its answer is logged on the page.
 * Typed text is never replaced by the server's copy; the page finds its own lock again
 * after a reload (the holder's GET carries the token) and releases it when the last tab
 * of this user that holds it closes. */
(function () {
  "use strict";
  const demo = window.demo;
  const root = document.getElementById("apilock");
  const cfg = root.dataset;
  const kind = cfg.kind; // "job" or "reference"
  const resource = cfg.resourceUrl;
  const $ = (id) => document.getElementById(id);
  const status = $("status");
  const log = $("log");
  const notice = $("notice");
  let token = null;
  let lostWhy = null; // why the lock this page held ended, from the event stream
  let streaming = false;
  // The server's values the form started from; typed text differs from them.
  let loaded = values();

  const tabs = demo.tabGroup(cfg.userId + ":" + cfg.lockUrl, () => {});

  // The reference API authenticates with the bearer JWT only: no cookie is sent, so the
  // lock's owner really comes from the token's "sub" claim.
  const auth = kind === "reference"
    ? { headers: { Authorization: "Bearer " + cfg.jwt }, credentials: "omit" }
    : {};

  function call(method, url, body, extra) {
    return demo.api(method, url, Object.assign({ token: token, body: body }, auth, extra || {}));
  }

  function record(method, url, r) {
    const li = document.createElement("li");
    const ok = r.status >= 200 && r.status < 300;
    li.className = ok ? "ok" : "bad";
    li.dataset.status = String(r.status);
    let text = method + " " + url + " → " + r.status;
    if (!ok) text += " " + demo.errorMessage(r);
    li.textContent = text;
    log.prepend(li);
  }

  function values() {
    if (kind === "job") return { status: $("f-status").value, notes: $("f-notes").value };
    return { reference: $("f-reference").value };
  }

  function serverValues(data) {
    if (kind === "job") return { status: data.job.status, notes: data.job.notes };
    return { reference: data.client.reference };
  }

  function same(a, b) {
    return Object.keys(a).every((k) => a[k] === b[k]);
  }

  function fill(v) {
    if (kind === "job") {
      $("f-status").value = v.status;
      $("f-notes").value = v.notes;
    } else {
      $("f-reference").value = v.reference;
    }
    loaded = v;
  }

  function holding(newToken) {
    token = newToken;
    root.dataset.holding = newToken ? "true" : "false";
    if (newToken) tabs.join();
  }

  /** The form follows the server unless the user typed; then the server's copy is shown
   * beside it instead of replacing it. */
  function follow(server) {
    const typed = !same(values(), loaded);
    if (!typed) {
      fill(server);
      notice.hidden = true;
    } else if (!same(server, loaded)) {
      notice.hidden = false;
      notice.textContent = "Changed on the server since this page loaded; your typed text " +
        "is kept. The server now has: " + Object.values(server).join(" · ");
    }
  }

  async function refresh() {
    const r = await demo.api("GET", resource, auth);
    if (!r.ok) {
      status.className = "banner banner-error";
      status.textContent = "Cannot load: " + demo.errorMessage(r);
      return;
    }
    const lock = r.data.lock;
    // The server shows the token to the lock's owner only: a token here means "yours".
    if (lock.locked && lock.token) {
      if (token !== lock.token) holding(lock.token);
      lostWhy = null;
    } else if (token) {
      tabs.leave();
      holding(null);
      lostWhy = lostWhy || "it expired or was released";
    }
    follow(serverValues(r.data));
    if (token) {
      status.className = "banner banner-mine";
      status.innerHTML = "You hold the lock (version " + lock.version + ", " +
        "<time data-until=\"" + Date.parse(lock.expires) / 1000 + "\"></time>).";
    } else {
      const lostHtml = lostWhy ? "<strong>You no longer hold the lock</strong>: " +
        demo.escapeHtml(lostWhy) + ". Your text is kept. " : "";
      if (!lock.locked) {
        status.className = "banner " + (lostWhy ? "banner-lost" : "banner-free");
        status.innerHTML = lostHtml + "Not locked. Lock it before saving.";
      } else {
        status.className = "banner " + (lostWhy ? "banner-lost" : "banner-locked");
        status.innerHTML = lostHtml + "Locked by <strong>" +
          demo.escapeHtml(lock.creator_name || lock.creator) + "</strong> since <time " +
          "data-clock=\"" + lock.since + "\"></time> (<time data-until=\"" +
          Date.parse(lock.expires) / 1000 + "\"></time>).";
      }
    }
    demo.refreshTimes(status);
  }

  function onEvent(e) {
    if (e.resource !== resource) return;
    if (token && ["stolen", "released", "expired"].includes(e.event)) {
      const by = e.by ? e.by.name || e.by.id : null;
      const mine = e.by && e.by.id === cfg.userId;
      if (e.event === "stolen") lostWhy = (by || "someone") + " took it over";
      else if (e.event === "expired") lostWhy = "it expired";
      else if (!mine) lostWhy = (by || "someone") + " released it";
      else lostWhy = "it was released from another of your tabs or windows";
    }
    refresh();
  }

  $("lock").addEventListener("click", async () => {
    const r = await call("POST", cfg.lockUrl);
    record("POST", cfg.lockUrl, r);
    if (r.ok) {
      holding((r.data && r.data.token) || r.headers.get("Lock-Token"));
      lostWhy = null;
    }
    refresh(); // never replaces typed text: see follow()
  });

  $("save").addEventListener("click", async () => {
    const sent = values();
    const r = await call("PATCH", resource, sent);
    record("PATCH", resource, r);
    if (r.ok) loaded = sent;
    refresh();
  });

  $("unlock").addEventListener("click", async () => {
    const r = await call("DELETE", cfg.lockUrl);
    record("DELETE", cfg.lockUrl, r);
    if (r.ok) {
      tabs.leave();
      holding(null);
    }
    refresh();
  });

  // Closing the last tab that holds the lock releases it (keepalive outlives the page).
  // A reload cannot be told apart from a close here, so the tab also notes (in its own
  // sessionStorage) that it held the lock and what was typed: a reload then locks again
  // and puts the text back.
  const stashKey = "demo-apilock:" + cfg.userId + ":" + cfg.lockUrl;
  window.addEventListener("pagehide", () => {
    const typed = same(values(), loaded) ? null : values();
    if (token || typed) {
      try {
        sessionStorage.setItem(stashKey, JSON.stringify(
          { at: Date.now(), holding: Boolean(token), typed: typed, loaded: loaded }));
      } catch (_) { /* no storage: nothing to restore */ }
    }
    if (!token) return;
    const used = token;
    token = null;
    if (tabs.leave()) {
      demo.api("DELETE", cfg.lockUrl, Object.assign({ token: used, keepalive: true }, auth));
    }
  });

  async function restore() {
    let stash = null;
    try {
      stash = JSON.parse(sessionStorage.getItem(stashKey) || "null");
      sessionStorage.removeItem(stashKey);
    } catch (_) { /* nothing to restore */ }
    if (stash && Date.now() - stash.at < 60000) {
      if (stash.typed) {
        loaded = stash.loaded;
        fill(stash.typed);
        loaded = stash.loaded;
      }
      if (stash.holding) {
        const r = await call("POST", cfg.lockUrl);
        record("POST", cfg.lockUrl, r);
        if (r.ok) holding((r.data && r.data.token) || r.headers.get("Lock-Token"));
      }
    }
    refresh();
  }

  demo.watchEvents("/@locks/events?prefix=" + encodeURIComponent(resource), onEvent, (state) => {
    streaming = state === "open";
    root.dataset.stream = state;
    if (state === "open") refresh();
  });
  restore();
  // Without the event stream, poll.
  setInterval(() => { if (!streaming) refresh(); }, 5000);
})();
