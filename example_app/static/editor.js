/* The document editor: lock on open, heartbeat while open, save with the lock token,
 * release on save, cancel and leaving the page; show who holds the lock otherwise. */
(function () {
  "use strict";
  const demo = window.demo;
  const root = document.getElementById("editor");
  const cfg = root.dataset;
  const lockUrl = cfg.lockUrl;
  const docUrl = cfg.docUrl;
  const wantStealable = cfg.stealable === "true";
  const heartbeatMs = Math.max(500, parseInt(cfg.heartbeatMs, 10) || 60000);
  const pollMs = Math.min(heartbeatMs, 5000);
  const isAdmin = cfg.admin === "true";

  const $ = (id) => document.getElementById(id);
  const status = $("status");
  const title = $("title");
  const body = $("body");
  const save = $("save");
  const cancel = $("cancel");
  const takeover = $("takeover");
  const start = $("start");
  const lockinfo = $("lockinfo");
  const message = $("message");

  let token = null; // the lock token while this page holds the lock
  let myLock = null; // the lock JSON of our lock
  let lost = false; // we held the lock and lost it (taken over or expired)
  let heartbeat = null;
  let ticker = null;
  let poller = null;

  function setStatus(kind, html) {
    status.className = "banner banner-" + kind;
    status.innerHTML = html;
    demo.refreshTimes(status);
  }

  function say(kind, text) {
    message.hidden = !text;
    message.className = "message message-" + kind;
    message.textContent = text || "";
  }

  function editable(on) {
    title.readOnly = !on;
    body.readOnly = !on;
    save.disabled = !on;
  }

  function holderName(lock) {
    return (lock && (lock.creator_name || lock.creator)) || "an anonymous user";
  }

  function epoch(iso) {
    return Date.parse(iso) / 1000;
  }

  // -- holding the lock ---------------------------------------------------------------

  async function acquire() {
    say("", "");
    const r = await demo.api("POST", lockUrl, { body: { stealable: wantStealable } });
    // Plone mode (LOCKING_CONTENT_COMPAT = "plone") answers someone else's lock with 200
    // and the holder's lock, without a token: only a token says the lock is ours.
    if (r.status === 200 && r.data.token) return hold(r.data);
    if (r.status === 200 && r.data.locked) return watch(r.data);
    if (r.status === 409) return watch(r.data && r.data.lock);
    editable(false);
    setStatus("error", "Could not lock the document: " + demo.escapeHtml(demo.errorMessage(r)));
  }

  async function hold(lock) {
    stopPolling();
    token = lock.token;
    myLock = lock;
    lost = false;
    root.dataset.holding = "true";
    // Load the text now that nobody else can change it.
    const r = await demo.api("GET", docUrl);
    if (r.ok) {
      title.value = r.data.document.title;
      body.value = r.data.document.body;
    }
    editable(true);
    takeover.hidden = true;
    start.hidden = true;
    renderMine();
    clearInterval(heartbeat);
    heartbeat = setInterval(beat, heartbeatMs);
    clearInterval(ticker);
    ticker = setInterval(renderMine, 1000);
    body.focus();
  }

  function renderMine() {
    if (!myLock || lost) return;
    const left = demo.countdown(epoch(myLock.expires));
    setStatus(
      "mine",
      "You are editing. Your lock expires in <strong id=\"timeleft\">" + left +
        "</strong> and is refreshed every " + Math.round(heartbeatMs / 1000) + " s while " +
        "this page is open." + (myLock.stealable ? "" : " Others cannot take it over."),
    );
    lockinfo.textContent = "lock version " + myLock.version;
  }

  async function beat() {
    if (!token) return;
    const r = await demo.api("PATCH", lockUrl, { token: token });
    if (r.ok && r.data.token) {
      myLock = r.data;
      root.dataset.beats = String((parseInt(root.dataset.beats || "0", 10) || 0) + 1);
      renderMine();
    } else if (r.ok || r.status === 409 || r.status === 404) {
      // (plone mode: 200 with the holder's lock, or the unlocked body)
      loseLock(r.data && (r.data.lock || (r.data.locked ? r.data : null)));
    } else {
      setStatus("error", "Could not refresh the lock (" + demo.escapeHtml(demo.errorMessage(r)) +
        "); retrying.");
    }
  }

  function loseLock(holder) {
    lost = true;
    root.dataset.holding = "false";
    clearInterval(heartbeat);
    clearInterval(ticker);
    const who = holder ? demo.escapeHtml(holderName(holder)) + " took it over" : "it expired";
    setStatus("lost", "<strong>You no longer hold the lock</strong>: " + who +
      ". Your text is still here, but saving will be refused so it cannot overwrite " +
      "anyone's work. Copy it, then reload.");
  }

  async function saveDocument() {
    save.disabled = true;
    // Lock-Release: true asks flask-locking to release the lock once the save succeeded
    // (a failed save keeps it); if the answer says it did not, release with DELETE.
    const r = await demo.api("PATCH", docUrl, {
      token: token,
      body: { title: title.value, body: body.value },
      headers: { "Lock-Release": "true" },
    });
    if (r.ok) {
      const used = token;
      token = null;
      clearInterval(heartbeat);
      clearInterval(ticker);
      if (r.headers.get("Lock-Released") !== "true") {
        await demo.api("DELETE", lockUrl, { token: used });
      }
      window.location.href = docUrl + "?saved=" + r.data.document.revision;
      return;
    }
    if (r.status === 412) {
      // Our token is stale: someone took over, or the lock expired. Nothing was written.
      const now = await demo.api("GET", docUrl);
      const lock = now.ok && now.data.lock.locked ? now.data.lock : null;
      const holder = lock ? holderName(lock) : null;
      if (!lost) loseLock(lock);
      say("error", "Not saved (412 Precondition Failed): your lock " +
        (holder ? "was taken over by " + holder : "expired or was released") +
        ", so your changes were not written over " + (holder ? holder + "'s" : "newer") +
        " work. Your text is kept in the editor.");
      save.disabled = false;
      return;
    }
    save.disabled = false;
    say("error", "Not saved (" + r.status + "): " + demo.errorMessage(r));
  }

  async function cancelEditing() {
    const used = token;
    token = null;
    clearInterval(heartbeat);
    if (used) await demo.api("DELETE", lockUrl, { token: used });
    window.location.href = docUrl;
  }

  // Leaving the page (closing the tab, navigating away) releases the lock. fetch with
  // keepalive outlives the page like sendBeacon, but can send DELETE and Lock-Token.
  window.addEventListener("pagehide", () => {
    if (!token) return;
    const used = token;
    token = null;
    demo.api("DELETE", lockUrl, { token: used, keepalive: true });
  });

  // -- someone else holds it -------------------------------------------------------

  function watch(lock) {
    token = null;
    root.dataset.holding = "false";
    editable(false);
    if (lock) showHolder(lock);
    refreshWaiting();
    stopPolling();
    poller = setInterval(refreshWaiting, pollMs);
  }

  function stopPolling() {
    clearInterval(poller);
    poller = null;
  }

  function showHolder(lock) {
    const since = lock.since || lock.time;
    const mayTakeOver = lock.stealable || isAdmin;
    setStatus("locked",
      "Locked by <strong id=\"holder\">" + demo.escapeHtml(holderName(lock)) + "</strong> since " +
      "<time data-clock=\"" + since + "\"></time> (<time data-until=\"" + epoch(lock.expires) +
      "\"></time>). You can read it but not save." +
      (lock.stealable ? "" : " The holder did not allow take-over" +
        (isAdmin ? "; as an admin you still may." : ".")));
    takeover.hidden = !mayTakeOver;
    takeover.textContent = lock.stealable ? "Take over" : "Take over (admin)";
    start.hidden = true;
    lockinfo.textContent = "lock version " + lock.version;
  }

  async function refreshWaiting() {
    const r = await demo.api("GET", docUrl);
    if (!r.ok || token) return;
    title.value = r.data.document.title;
    body.value = r.data.document.body;
    if (r.data.lock.locked) {
      showHolder(r.data.lock);
    } else {
      setStatus("free", "The document is free now (revision " + r.data.document.revision +
        "). Press <em>Edit now</em> to lock it for yourself.");
      takeover.hidden = true;
      start.hidden = false;
      lockinfo.textContent = "";
    }
  }

  async function takeOver() {
    takeover.disabled = true;
    const r = await demo.api("DELETE", lockUrl, { body: { force: true } });
    takeover.disabled = false;
    if (!r.ok || r.data.locked) {  // plone mode: a refused steal is a 200, still locked
      say("error", "Could not take over (" + r.status + "): " +
        (r.ok ? "the lock is still held." : demo.errorMessage(r)));
      return refreshWaiting();
    }
    await acquire();
    if (token) say("info", "You took over the lock. The previous holder's unsaved changes " +
      "stay in their browser; they cannot save over yours.");
  }

  save.addEventListener("click", saveDocument);
  cancel.addEventListener("click", cancelEditing);
  takeover.addEventListener("click", takeOver);
  start.addEventListener("click", acquire);
  acquire();
})();
