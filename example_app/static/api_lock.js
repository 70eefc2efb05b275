/* Jobs and reference data: lock, save with the token, unlock, through the job-lock and
 * the JWT reference-lock APIs. Every request and its answer is logged on the page. */
(function () {
  "use strict";
  const demo = window.demo;
  const root = document.getElementById("apilock");
  const cfg = root.dataset;
  const kind = cfg.kind; // "job" or "reference"
  const $ = (id) => document.getElementById(id);
  const status = $("status");
  const log = $("log");
  let token = null;

  // The reference API authenticates with the bearer JWT only: no cookie is sent, so the
  // lock's owner really comes from the token's "sub" claim.
  const auth = kind === "reference"
    ? { headers: { Authorization: "Bearer " + cfg.jwt }, credentials: "omit" }
    : {};

  function call(method, url, body) {
    return demo.api(method, url, Object.assign({ token: token, body: body }, auth));
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

  function payload() {
    if (kind === "job") return { status: $("f-status").value, notes: $("f-notes").value };
    return { reference: $("f-reference").value };
  }

  function fill(data) {
    if (kind === "job") {
      $("f-status").value = data.job.status;
      $("f-notes").value = data.job.notes;
    } else {
      $("f-reference").value = data.client.reference;
    }
  }

  async function refresh(reload) {
    const r = await demo.api("GET", cfg.resourceUrl, auth);
    if (!r.ok) {
      status.className = "banner banner-error";
      status.textContent = "Cannot load: " + demo.errorMessage(r);
      return;
    }
    if (reload) fill(r.data);
    const lock = r.data.lock;
    if (!lock.locked) {
      status.className = "banner banner-free";
      status.innerHTML = "Not locked. Lock it before saving.";
    } else if (token) {
      status.className = "banner banner-mine";
      status.innerHTML = "You hold the lock (version " + lock.version + ", " +
        "<time data-until=\"" + Date.parse(lock.expires) / 1000 + "\"></time>).";
    } else {
      status.className = "banner banner-locked";
      status.innerHTML = "Locked by <strong>" + demo.escapeHtml(lock.creator_name || lock.creator) +
        "</strong> since <time data-clock=\"" + lock.since + "\"></time> (<time data-until=\"" +
        Date.parse(lock.expires) / 1000 + "\"></time>).";
    }
    demo.refreshTimes(status);
  }

  $("lock").addEventListener("click", async () => {
    const r = await call("POST", cfg.lockUrl);
    record("POST", cfg.lockUrl, r);
    if (r.ok) {
      token = (r.data && r.data.token) || r.headers.get("Lock-Token");
      root.dataset.holding = "true";
    }
    refresh(r.ok);
  });

  $("save").addEventListener("click", async () => {
    const r = await call("PATCH", cfg.resourceUrl, payload());
    record("PATCH", cfg.resourceUrl, r);
    refresh(false);
  });

  $("unlock").addEventListener("click", async () => {
    const r = await call("DELETE", cfg.lockUrl);
    record("DELETE", cfg.lockUrl, r);
    if (r.ok) {
      token = null;
      root.dataset.holding = "false";
    }
    refresh(false);
  });

  refresh(false);
  setInterval(() => refresh(false), 5000);
})();
