/* The document editor: lock on open, heartbeat while open, save with the lock token,
 * release when the last tab of this user leaves; follow the lock's event stream so that a
 * take-over, an admin release or expiry is shown at once, with its true reason; keep the
 * user's text when the lock is lost, and let them lock again. */
(function () {
  "use strict";
  const demo = window.demo;
  const root = document.getElementById("editor");
  const cfg = root.dataset;
  const lockUrl = cfg.lockUrl;
  const docUrl = cfg.docUrl;
  const resource = cfg.resource;
  const me = cfg.userId;
  const admins = (cfg.admins || "").split(" ").filter(Boolean);
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
  const confirmBox = $("confirm");
  const start = $("start");
  const lockinfo = $("lockinfo");
  const message = $("message");
  const useTheirs = $("use-theirs");

  let token = null; // the lock token while this page holds the lock
  let myLock = null; // the lock JSON of our lock
  let lost = null; // why we lost the lock we held: {html, at}; null while holding / never held
  let trouble = null; // the last failed refresh, shown until one succeeds
  let holder = null; // the lock someone else holds, as last seen
  let heartbeat = null;
  let ticker = null;
  let poller = null;
  let streaming = false; // the event stream is connected
  let sibling = null; // the last thing another tab of ours said: {what, at}
  // The server's text this editor's text started from: a save writes over this revision.
  let base = { title: title.value, body: body.value, revision: parseInt(cfg.revision, 10) };

  const tabs = demo.tabGroup(me + ":" + lockUrl, onSibling);

  // -- small helpers --------------------------------------------------------------------

  function setStatus(kind, html) {
    status.className = "banner banner-" + kind;
    status.dataset.state = kind;
    status.innerHTML = html;
    demo.refreshTimes(status);
  }

  function say(kind, text) {
    message.hidden = !text;
    message.className = "message message-" + kind;
    message.textContent = text || "";
  }

  /** Typing is allowed while we hold the lock and after losing it (the draft is theirs);
   * Save only while we hold it. */
  function editable(typing, saving) {
    title.readOnly = !typing;
    body.readOnly = !typing;
    save.disabled = !saving;
  }

  function nameOf(person) {
    if (!person) return "an anonymous user";
    const name = person.name || person.id || "an anonymous user";
    return admins.includes(person.id) ? name + " (admin)" : name;
  }

  function holderName(lock) {
    if (!lock) return "an anonymous user";
    return nameOf({ id: lock.creator, name: lock.creator_name });
  }

  function epoch(iso) {
    return Date.parse(iso) / 1000;
  }

  function dirty() {
    return title.value !== base.title || body.value !== base.body;
  }

  function at(seconds) {
    return "<time data-clock=\"" + seconds + "\" data-seconds></time>";
  }

  // -- holding the lock ---------------------------------------------------------------

  async function acquire() {
    say("", "");
    start.disabled = true;
    const r = await demo.api("POST", lockUrl, { body: { stealable: wantStealable } });
    start.disabled = false;
    // Plone mode (LOCKING_CONTENT_COMPAT = "plone") answers someone else's lock with 200
    // and the holder's lock, without a token: only a token says the lock is ours.
    if (r.status === 200 && r.data.token) return hold(r.data);
    if (r.status === 200 && r.data.locked) return notHolding(r.data);
    if (r.status === 409) return notHolding(r.data && r.data.lock);
    editable(Boolean(lost), false);
    setStatus("error", "Could not lock the document: " + demo.escapeHtml(demo.errorMessage(r)));
  }

  async function hold(lock) {
    stopPolling();
    token = lock.token;
    myLock = lock;
    const hadLost = lost;
    lost = null;
    trouble = null;
    holder = null;
    root.dataset.holding = "true";
    tabs.join();
    // Now that nobody else can change it, load the text: unless the user has a draft of
    // their own (they lost the lock and locked again), which is never replaced.
    const r = await demo.api("GET", docUrl);
    if (r.ok && token) {
      const doc = r.data.document;
      if (!dirty()) {
        title.value = doc.title;
        body.value = doc.body;
        hideTheirs();
      } else if (doc.revision !== base.revision) {
        showTheirs(doc);
      }
      base = { title: doc.title, body: doc.body, revision: doc.revision };
    }
    editable(true, true);
    takeover.hidden = true;
    confirmBox.hidden = true;
    start.hidden = true;
    renderMine();
    clearInterval(heartbeat);
    heartbeat = setInterval(beat, heartbeatMs);
    clearInterval(ticker);
    ticker = setInterval(renderMine, 1000);
    if (hadLost && !$("theirs-field").hidden) {
      say("info", "You hold the lock again. The document changed while you did not: " +
        "your text is on the left, the saved one on the right. Save writes yours.");
    } else if (hadLost) {
      say("info", "You hold the lock again; your text is as you left it.");
    }
    body.focus();
  }

  function showTheirs(doc) {
    $("theirs").value = doc.body;
    $("theirs-label").textContent = "Saved meanwhile: revision " + doc.revision + " by " +
      (doc.updated_by || "someone") + (doc.title !== title.value ? ", titled “" + doc.title + "”" : "");
    $("theirs-field").hidden = false;
    $("compare").classList.add("split");
    useTheirs.hidden = false;
  }

  function hideTheirs() {
    $("theirs-field").hidden = true;
    $("compare").classList.remove("split");
    useTheirs.hidden = true;
  }

  function renderMine() {
    if (!token || !myLock) return;
    const expires = epoch(myLock.expires);
    if (expires * 1000 <= demo.now()) {
      // No refresh got through in time: the lock is gone, whatever the last answer said.
      return loseLock("<strong>Your lock expired</strong> at " + at(expires) +
        (trouble ? " (the refreshes failed: " + demo.escapeHtml(trouble) + ")" : "") + ".");
    }
    const left = "<strong id=\"timeleft\">" + demo.countdown(expires) + "</strong>";
    if (trouble) {
      setStatus("warn", "<strong>Could not refresh the lock</strong> (" +
        demo.escapeHtml(trouble) + "); retrying every " + Math.round(heartbeatMs / 1000) +
        " s. Unless a retry gets through, your lock expires in " + left + ".");
    } else {
      setStatus("mine", "You are editing. Your lock expires in " + left + " and is refreshed " +
        "every " + Math.round(heartbeatMs / 1000) + " s while this page is open." +
        (myLock.stealable ? "" : " Others cannot take it over."));
    }
    lockinfo.textContent = "lock version " + myLock.version;
  }

  async function beat() {
    if (!token) return;
    const used = token;
    const r = await demo.api("PATCH", lockUrl, { token: used });
    if (token !== used) return; // lost or released meanwhile
    if (r.ok && r.data.token) {
      myLock = r.data;
      trouble = null;
      root.dataset.beats = String((parseInt(root.dataset.beats || "0", 10) || 0) + 1);
    } else if (r.ok || r.status === 409 || r.status === 404 || r.status === 412) {
      // The server has no lock of ours any more (plone mode: 200 with the holder's lock or
      // the unlocked body). The event stream normally said why first.
      return loseLock("<strong>The server no longer has your lock</strong> (it expired or was " +
        "released).", r.data && (r.data.lock || (r.data.locked ? r.data : null)));
    } else {
      trouble = demo.errorMessage(r);
    }
    renderMine();
  }

  /** We held the lock and do not any more: say why, keep the text, disable Save. */
  function loseLock(reasonHtml, current) {
    if (!token) return;
    token = null;
    myLock = null;
    lost = { html: reasonHtml };
    root.dataset.holding = "false";
    clearInterval(heartbeat);
    clearInterval(ticker);
    tabs.leave();
    editable(true, false);
    holder = current === undefined ? holder : current;
    renderNotHolding();
    if (current === undefined) refreshWaiting();
    startPollingUnlessStreaming();
  }

  async function saveDocument() {
    if (!token) return;
    save.disabled = true;
    // Lock-Release: true asks flask-locking to release the lock once the save succeeded
    // (a failed save keeps it), unless another tab of ours still edits with it.
    const last = tabs.others().length === 0;
    const used = token;
    const r = await demo.api("PATCH", docUrl, {
      token: used,
      body: { title: title.value, body: body.value },
      headers: last ? { "Lock-Release": "true" } : {},
    });
    if (r.ok) {
      token = null;
      clearInterval(heartbeat);
      clearInterval(ticker);
      const stillLast = tabs.leave();
      tabs.tell({ what: "saved", revision: r.data.document.revision });
      if (stillLast && r.headers.get("Lock-Released") !== "true") {
        await demo.api("DELETE", lockUrl, { token: used });
      }
      window.location.href = docUrl + "?saved=" + r.data.document.revision;
      return;
    }
    if (r.status === 412) {
      // Our token is stale: someone took over, or the lock expired. Nothing was written.
      const now = await demo.api("GET", docUrl);
      const lock = now.ok && now.data.lock.locked ? now.data.lock : null;
      loseLock("<strong>Not saved (412 Precondition Failed)</strong>: your lock " +
        (lock ? "was taken over by " + demo.escapeHtml(holderName(lock)) : "expired or was released") +
        ", so your changes were not written over newer work.", lock);
      say("error", "Not saved (412 Precondition Failed): your lock " +
        (lock ? "was taken over by " + holderName(lock) : "expired or was released") +
        ". Your text is kept in the editor.");
      return;
    }
    save.disabled = !token;
    say("error", "Not saved (" + r.status + "): " + demo.errorMessage(r));
  }

  async function cancelEditing() {
    const used = token;
    token = null;
    clearInterval(heartbeat);
    if (used && tabs.leave()) {
      tabs.tell({ what: "cancelled" });
      await demo.api("DELETE", lockUrl, { token: used });
    }
    window.location.href = docUrl;
  }

  // Leaving the page (closing the tab, navigating away) releases the lock when no other
  // tab of this user still holds it. fetch with keepalive outlives the page like
  // sendBeacon, but can send DELETE and Lock-Token.
  const draftKey = "demo-draft:" + me + ":" + docUrl;
  window.addEventListener("pagehide", () => {
    // A reload looks like a close: keep an unsaved draft in this tab's sessionStorage so
    // the reloaded editor puts it back (and shows what changed meanwhile).
    if ((token || lost) && dirty()) {
      try {
        sessionStorage.setItem(draftKey, JSON.stringify(
          { at: Date.now(), title: title.value, body: body.value, base: base }));
      } catch (_) { /* no storage: the draft is lost with the page */ }
    }
    if (!token) return;
    const used = token;
    token = null;
    if (tabs.leave()) {
      tabs.tell({ what: "closed" });
      demo.api("DELETE", lockUrl, { token: used, keepalive: true });
    }
  });
  // Back from the back/forward cache: the lock may have been released on the way out.
  window.addEventListener("pageshow", (e) => {
    if (e.persisted && lost === null && !token) acquire();
  });

  function onSibling(msg) {
    sibling = { what: msg.what, revision: msg.revision, at: Date.now() };
    if (msg.what === "saved" && token) {
      // Another tab of ours saved with the shared lock: show what it wrote.
      demo.api("GET", docUrl).then((r) => {
        if (!r.ok || !token) return;
        const doc = r.data.document;
        if (dirty()) {
          showTheirs(doc);
        } else {
          title.value = doc.title;
          body.value = doc.body;
        }
        base = { title: doc.title, body: doc.body, revision: doc.revision };
        say("info", "Another of your tabs saved revision " + doc.revision + ".");
      });
    }
  }

  function releasedByMe() {
    const recent = sibling && Date.now() - sibling.at < 15000 ? sibling.what : null;
    if (recent === "saved") return "another of your tabs saved the document and released it";
    if (recent === "cancelled") return "you cancelled editing in another of your tabs";
    if (recent === "closed") return "another of your tabs closed and released it";
    return "it was released from another of your tabs or windows";
  }

  // -- events: the true reason, at once ---------------------------------------------

  function onEvent(e) {
    if (e.resource !== resource) return;
    // For released, stolen and expired, e.lock is the lock that ended: nobody holds it now.
    const live = e.event === "acquired" || e.event === "refreshed";
    const lock = live && e.lock && e.lock.locked !== false ? e.lock : null;
    if (token && myLock) {
      const mine = lock && lock.version === myLock.version;
      if ((e.event === "refreshed" || e.event === "acquired") && mine) {
        myLock = Object.assign({}, lock, { token: token });
        return renderMine();
      }
      const when = at(e.time || demo.now() / 1000);
      const by = e.by ? demo.escapeHtml(nameOf(e.by)) : "someone";
      if (e.event === "stolen") {
        // A force-release by someone else: an admin's release, or the first half of a
        // take-over (then their "acquired" follows and the reason is updated below).
        loseLock("<strong>" + by + " released your lock</strong> at " + when + ".", null);
        if (lost && e.by) lost.releasedBy = { id: e.by.id, html: by, when: when, at: Date.now() };
        return;
      }
      if (e.event === "released") {
        const byMe = e.by && e.by.id === me;
        return loseLock(byMe
          ? "<strong>Your lock was released</strong> at " + when + ": " + releasedByMe() + "."
          : "<strong>" + by + " released your lock</strong> at " + when + ".", null);
      }
      if (e.event === "expired") {
        return loseLock("<strong>Your lock expired</strong> at " + when + ": no refresh " +
          "reached the server in time.", null);
      }
      if (lock && !mine) {
        return loseLock("<strong>Your lock ended</strong>; " + holderName(lock) + " holds it now.", lock);
      }
      return;
    }
    const rel = lost && lost.releasedBy;
    if (rel && lock && e.event === "acquired" && lock.creator === rel.id && Date.now() - rel.at < 15000) {
      lost.html = "<strong>" + rel.html + " took over your lock</strong> at " + rel.when + ".";
      lost.releasedBy = null;
    }
    if (lock && holder && holder.version === lock.version && holder.since) {
      lock.since = holder.since; // a refresh moves "time", not the grant's start
    }
    holder = lock;
    renderNotHolding();
    // The text may have changed (the holder saved): refresh it unless it is our draft.
    if (!lock) refreshWaiting();
  }

  function onStream(state) {
    streaming = state === "open";
    root.dataset.stream = state;
    if (state === "open") {
      stopPolling();
      if (!token) refreshWaiting(); // catch up with anything before the stream started
    } else if (!token) {
      startPollingUnlessStreaming();
    }
  }

  // -- someone else holds it, or nobody -------------------------------------------

  function notHolding(lock) {
    token = null;
    root.dataset.holding = "false";
    holder = lock || null;
    editable(Boolean(lost), false);
    renderNotHolding();
    refreshWaiting();
    startPollingUnlessStreaming();
  }

  function startPollingUnlessStreaming() {
    stopPolling();
    if (!streaming) poller = setInterval(refreshWaiting, pollMs);
  }

  function stopPolling() {
    clearInterval(poller);
    poller = null;
  }

  function renderNotHolding() {
    if (token) return;
    const lock = holder;
    const reason = lost ? lost.html + " Your text is kept; <em>Save</em> is disabled until " +
      "you hold the lock again. " : "";
    if (lock && lock.creator === me) {
      // Ours, from another tab or window (or not yet expired on the server's clock).
      setStatus(lost ? "lost" : "free", reason + "You hold this lock in another tab or " +
        "window. Press <em>" + (lost ? "Lock again" : "Edit now") + "</em> to edit here too.");
      takeover.hidden = true;
      confirmBox.hidden = true;
      start.hidden = false;
      start.textContent = lost ? "Lock again" : "Edit now";
      lockinfo.textContent = "lock version " + lock.version;
    } else if (lock) {
      const since = lock.since || lock.time;
      const mayTakeOver = lock.stealable || isAdmin;
      setStatus(lost ? "lost" : "locked", reason +
        "Locked by <strong id=\"holder\">" + demo.escapeHtml(holderName(lock)) + "</strong> since " +
        "<time data-clock=\"" + since + "\"></time> (<time data-until=\"" + epoch(lock.expires) +
        "\"></time>)." + (lost ? "" : " You can read it but not save.") +
        (lock.stealable ? "" : " The holder did not allow take-over" +
          (isAdmin ? "; as an admin you still may." : ".")));
      takeover.hidden = !mayTakeOver;
      takeover.textContent = lock.stealable ? "Take over" : "Take over (admin)";
      start.hidden = true;
      lockinfo.textContent = "lock version " + lock.version;
    } else {
      setStatus(lost ? "lost" : "free", reason + (lost
        ? "The document is free: press <em>Lock again</em> to continue with your text."
        : "<strong>Free — edit now.</strong> The document is free now (revision " +
          base.revision + "). Press <em>Edit now</em> to lock it for yourself."));
      takeover.hidden = true;
      confirmBox.hidden = true;
      start.hidden = false;
      start.textContent = lost ? "Lock again" : "Edit now";
      lockinfo.textContent = "";
    }
  }

  async function refreshWaiting() {
    const r = await demo.api("GET", docUrl);
    if (!r.ok || token) return;
    const doc = r.data.document;
    if (!lost) {
      // Only a reader's copy: follow the saved text.
      title.value = doc.title;
      body.value = doc.body;
      base = { title: doc.title, body: doc.body, revision: doc.revision };
    }
    holder = r.data.lock.locked ? r.data.lock : null;
    renderNotHolding();
  }

  function askTakeOver() {
    $("confirm-text").textContent = "Take over " + holderName(holder) + "'s lock? " +
      holderName(holder) + " is told at once and can no longer save their unsaved changes.";
    confirmBox.hidden = false;
    $("takeover-yes").focus();
  }

  async function takeOver() {
    confirmBox.hidden = true;
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
  takeover.addEventListener("click", askTakeOver);
  $("takeover-yes").addEventListener("click", takeOver);
  $("takeover-no").addEventListener("click", () => { confirmBox.hidden = true; });
  start.addEventListener("click", acquire);
  useTheirs.addEventListener("click", () => {
    body.value = $("theirs").value;
    hideTheirs();
  });
  try {
    const draft = JSON.parse(sessionStorage.getItem(draftKey) || "null");
    sessionStorage.removeItem(draftKey);
    if (draft && Date.now() - draft.at < 3600000) {
      title.value = draft.title;
      body.value = draft.body;
      base = draft.base;
      lost = { html: "" }; // a draft of ours: never replaced by the server's text
    }
  } catch (_) { /* no storage */ }
  demo.watchEvents(lockUrl + "/events", onEvent, onStream);
  acquire();
})();
