/* The Locks page, live: the table comes from the listing API (GET /@locks, page by page)
 * and is read again whenever /@locks/events reports a change; an admin's Release button
 * calls DELETE /@locks with {"resources": [...], "force": true}. */
(function () {
  "use strict";
  const demo = window.demo;
  const root = document.getElementById("live-locks");
  const isAdmin = root.dataset.admin === "true";
  const message = document.getElementById("locks-message");
  const since = JSON.parse(root.dataset.since || "{}"); // "resource version" -> epoch
  const MAX_PAGES = 20;
  let pending = null;

  function cell(row, html) {
    const td = document.createElement("td");
    td.innerHTML = html;
    row.appendChild(td);
    return td;
  }

  function render(items) {
    root.querySelectorAll("#locks, #no-locks").forEach((e) => e.remove());
    if (!items.length) {
      const p = document.createElement("p");
      p.id = "no-locks";
      p.className = "empty";
      p.textContent = "Nothing is locked right now.";
      root.appendChild(p);
      return;
    }
    const table = document.createElement("table");
    table.className = "grid";
    table.id = "locks";
    table.innerHTML = "<thead><tr><th>Resource</th><th>Held by</th><th>Since</th>" +
      "<th>Expires</th><th>Take-over</th><th>Version</th>" + (isAdmin ? "<th></th>" : "") +
      "</tr></thead><tbody></tbody>";
    const tbody = table.querySelector("tbody");
    items.forEach((lock) => {
      const row = document.createElement("tr");
      row.dataset.resource = lock.resource;
      const started = since[lock.resource + " " + lock.version] || lock.time;
      cell(row, "<code>" + demo.escapeHtml(lock.resource) + "</code>");
      cell(row, demo.escapeHtml(lock.creator_name || lock.creator || "anonymous"));
      cell(row, "<time data-clock=\"" + started + "\"></time>");
      cell(row, "<time data-until=\"" + Date.parse(lock.expires) / 1000 + "\"></time>");
      cell(row, lock.stealable ? "allowed" : "admins only");
      cell(row, String(lock.version));
      if (isAdmin) {
        const button = document.createElement("button");
        button.className = "danger small";
        button.textContent = "Release";
        button.addEventListener("click", () => release(lock));
        cell(row, "").appendChild(button);
      }
      tbody.appendChild(row);
    });
    root.appendChild(table);
    demo.refreshTimes(table);
  }

  async function load() {
    const items = [];
    let url = "/@locks?limit=100";
    for (let page = 0; url && page < MAX_PAGES; page++) {
      const r = await demo.api("GET", url);
      if (!r.ok) {
        say("error", "Could not list the locks: " + demo.errorMessage(r));
        return;
      }
      items.push(...r.data.items);
      url = r.data.next ? "/@locks?limit=100&cursor=" + encodeURIComponent(r.data.next) : null;
    }
    render(items);
  }

  function say(kind, text) {
    message.hidden = !text;
    message.className = "message message-" + kind;
    message.textContent = text;
  }

  async function release(lock) {
    const r = await demo.api("DELETE", "/@locks", {
      body: { resources: [lock.resource], force: true },
    });
    const holder = lock.creator_name || lock.creator || "anonymous";
    if (r.ok && r.data.released.length) {
      say("info", "Released " + holder + "'s lock on " + lock.resource + ".");
    } else if (r.ok && r.data.refused.length) {
      say("error", "Could not release " + lock.resource + ": " + r.data.refused[0].message);
    } else if (r.ok) {
      say("info", lock.resource + " was not locked any more.");
    } else {
      say("error", "Could not release " + lock.resource + ": " + demo.errorMessage(r));
    }
    load();
  }

  function changed(e) {
    if (e.event === "acquired" && e.lock) since[e.resource + " " + e.lock.version] = e.time;
    clearTimeout(pending); // one read for a burst of events
    pending = setTimeout(load, 100);
  }

  let streaming = false;
  demo.watchEvents("/@locks/events", changed, (state) => {
    streaming = state === "open";
    root.dataset.stream = state;
    if (state === "open") load();
  });
  setInterval(() => { if (!streaming) load(); }, 5000);
})();
