// The local console's page. Everything shown is set with textContent (never as HTML): user
// attributes are hostile bytes. Every request carries the console's token in a header.
"use strict";

const TOKEN = document.body.dataset.token;
const state = { cursor: null, search: "", loaded: 0, selected: null, activitySeen: 0, activityPolled: false };

async function api(method, path, body) {
  const options = { method, headers: { "X-Console-Token": TOKEN } };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes || {})) {
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function notice(text, isError) {
  const box = document.getElementById("notice");
  box.textContent = text;
  box.className = isError ? "error" : "ok";
  box.hidden = !text;
}

function stateBadge(entry) {
  let label = entry.state;
  if (entry.stale_fields && entry.stale_fields.length) label += ": " + entry.stale_fields.join(", ");
  return el("span", { class: "badge state-" + entry.state.replace(/ /g, "-") }, label);
}

// --- the stack ---------------------------------------------------------------------------

async function loadStack() {
  const info = await api("GET", "/api/stack");
  const list = document.getElementById("stack");
  for (const [label, value] of [
    ["pool", info.user_pool_id], ["app client", info.client_id], ["table", info.table],
    ["confirmation code", info.confirmation_code],
  ]) {
    list.append(el("div", {}, el("dt", {}, label), el("dd", { "data-field": label }, value)));
  }
  document.getElementById("legend").textContent =
    "states: " + info.states.join(" · ") + ". App fields are shown, never editable here.";
  state.policies = info.erasure_policies;
  state.editable = info.editable_attributes;
}

// --- the users view ------------------------------------------------------------------------

async function loadUsers(more) {
  const params = new URLSearchParams();
  if (more && state.cursor) params.set("cursor", state.cursor);
  if (state.search) params.set("q", state.search);
  const page = await api("GET", "/api/users?" + params);
  const body = document.querySelector("#users tbody");
  if (!more) { body.replaceChildren(); state.loaded = 0; }
  for (const entry of page.entries) {
    const row = el("tr", { "data-user-id": entry.user_id, "data-state": entry.state, tabIndex: 0 },
      el("td", {}, stateBadge(entry)),
      el("td", { class: "email" }, entry.email || "—"),
      el("td", { class: "mono" }, entry.user_id),
      el("td", {}, (entry.row && entry.row.role) || "—"),
      el("td", {}, (entry.row && entry.row.status) || "—"));
    row.addEventListener("click", () => showDetail(entry.user_id));
    row.addEventListener("keydown", (e) => { if (e.key === "Enter") showDetail(entry.user_id); });
    if (entry.user_id === state.selected) row.classList.add("selected");
    body.append(row);
  }
  state.loaded += page.entries.length;
  state.cursor = page.cursor;
  document.getElementById("more").hidden = !page.cursor;
  document.getElementById("users-count").textContent =
    state.loaded + " shown" + (page.cursor ? (page.stage === "rows" ? "; more: rows without a user" : "; more users") : "");
}

async function refreshUsers(afterAction) {
  // Live refresh only while the first page is all that is shown (paging keeps its place).
  if (state.loaded <= 50) await loadUsers(false);
  if (state.selected) await showDetail(state.selected, true, afterAction);
}

function fieldsTable(title, fields, appFields) {
  const table = el("table", { class: "fields" });
  for (const [name, value] of Object.entries(fields)) {
    const shown = value === null ? "null" : typeof value === "object" ? JSON.stringify(value) : String(value);
    const tr = el("tr", {}, el("th", {}, name), el("td", {}, shown));
    if (appFields && appFields.includes(name)) {
      tr.classList.add("app-field");
      tr.firstChild.append(el("span", { class: "tag", title: "the app's own field: read-only here" }, "app"));
    }
    table.append(tr);
  }
  return el("div", { class: "side" }, el("h3", {}, title), table);
}

async function showDetail(userId, quiet, force) {
  if (!quiet) state.armed = null;  // opening a user never finds the delete button armed
  state.selected = userId;
  const box = document.getElementById("detail");
  let data;
  try {
    data = await api("GET", "/api/users/" + encodeURIComponent(userId));
  } catch (error) {
    if (!quiet) notice(error.message, true);
    box.hidden = true;
    return;
  }
  // A refresh redraws the detail only when it changed, and never under the developer's hands.
  const key = JSON.stringify(data);
  const busy = box.contains(document.activeElement);
  if (quiet && !force && (key === state.detailKey || busy)) return;
  state.detailKey = key;
  const cognito = data.cognito
    ? fieldsTable("Cognito user", { username: data.cognito.username, status: data.cognito.status,
        enabled: data.cognito.enabled, ...data.cognito.attributes })
    : el("div", { class: "side" }, el("h3", {}, "Cognito user"), el("p", {}, "none: the user is gone"));
  const row = data.row
    ? fieldsTable("Row in the table", data.row, data.app_fields)
    : el("div", { class: "side" }, el("h3", {}, "Row in the table"), el("p", {}, "none: the row is missing"));
  box.replaceChildren(
    el("h3", {}, "User ", el("span", { class: "mono" }, userId), " ", stateBadge(data.entry)),
    el("div", { class: "sides" }, cognito, row),
    data.cognito ? userActions(userId, data) : null);
  box.hidden = false;
  for (const tr of document.querySelectorAll("#users tbody tr")) {
    tr.classList.toggle("selected", tr.dataset.userId === userId);
  }
}

function userActions(userId, data) {
  const enabled = data.cognito.enabled;
  const toggle = el("button", { type: "button", id: "toggle-enabled" }, enabled ? "disable" : "enable");
  toggle.addEventListener("click", () => act(() =>
    api("POST", `/api/users/${encodeURIComponent(userId)}/enabled`, { enabled: !enabled }),
    (enabled ? "disabled " : "enabled ") + userId));

  const attribute = el("select", { name: "attribute", "aria-label": "attribute" },
    ...state.editable.map((name) => el("option", {}, name)));
  const value = el("input", { type: "text", name: "value", placeholder: "new value", "aria-label": "new value" });
  const change = el("form", { class: "inline", id: "change-attribute" }, attribute, value,
    el("button", { type: "submit" }, "change"));
  change.addEventListener("submit", (event) => {
    event.preventDefault();
    act(() => api("POST", `/api/users/${encodeURIComponent(userId)}/attributes`,
      { name: attribute.value, value: value.value }), `changed ${attribute.value} in Cognito`);
  });

  const policy = el("select", { name: "policy", "aria-label": "erasure policy" },
    ...state.policies.map((name) => el("option", {}, name)));
  // Two clicks: the first arms it (and a redraw keeps it armed), the second deletes.
  const armedText = "really delete from Cognito and erase the row?";
  const remove = el("button", { type: "button", id: "delete", class: "danger" },
    state.armed === userId ? armedText : "delete…");
  remove.addEventListener("click", () => {
    if (state.armed !== userId) {
      state.armed = userId;
      remove.textContent = armedText;
      return;
    }
    state.armed = null;
    act(() => api("POST", `/api/users/${encodeURIComponent(userId)}/delete`, { policy: policy.value }),
      `deleted ${userId} (${policy.value})`);
  });
  return el("div", { class: "user-actions" }, toggle, change,
    el("span", { class: "inline" }, "erasure policy ", policy, remove));
}

async function act(action, done) {
  try {
    await action();
    notice(done, false);
  } catch (error) {
    notice(error.message, true);
  }
  await refreshUsers(true);
}

// --- actions ----------------------------------------------------------------------------

function setUpActions() {
  document.getElementById("create").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    const body = Object.fromEntries(form.entries());
    act(async () => {
      const made = await api("POST", "/api/users", body);
      state.selected = made.user_id;
    }, `signed up and confirmed ${body.email}`);
  });
  const report = document.getElementById("reconcile-report");
  const apply = document.getElementById("reconcile-apply");
  const run = async (doApply) => {
    try {
      const result = await api("POST", "/api/reconcile", { apply: doApply });
      report.textContent = summary(result, doApply);
      report.hidden = false;
      apply.disabled = doApply;
      notice(doApply ? "reconcile applied" : "reconcile dry run done: apply to heal", false);
    } catch (error) {
      notice(error.message, true);
    }
    if (doApply) await refreshUsers(true);
  };
  document.getElementById("reconcile-dry").addEventListener("click", () => run(false));
  apply.addEventListener("click", () => run(true));
  document.getElementById("more").addEventListener("click", () => loadUsers(true));
  document.getElementById("search").addEventListener("submit", (event) => event.preventDefault());
  let typing;
  document.getElementById("search-email").addEventListener("input", (event) => {
    clearTimeout(typing);
    typing = setTimeout(() => { state.search = event.target.value.trim(); loadUsers(false); }, 250);
  });
}

function summary(report, applied) {
  const lines = [applied ? "applied:" : "dry run (nothing written):"];
  for (const [key, value] of Object.entries(report)) {
    if (typeof value === "number") lines.push(`  ${key}: ${value}`);
  }
  for (const example of report.examples || []) {
    lines.push(`  ${example.category}: ${example.user_id} ${example.detail || ""}`);
  }
  return lines.join("\n");
}

// --- activity ---------------------------------------------------------------------------

async function pollActivity() {
  try {
    const data = await api("GET", "/api/activity?after=" + state.activitySeen);
    const list = document.getElementById("activity");
    for (const item of data.invocations.slice().reverse()) {
      const line = el("li", { "data-user-id": item.user_id || "", "data-outcome": item.outcome || "" },
        el("time", {}, item.time.replace("T", " ").replace("Z", "")),
        " ", el("span", { class: "fn" }, item.function),
        " ", el("span", { class: "source" }, item.trigger_source || "?"),
        " ", el("span", { class: "badge outcome-" + (item.outcome || "none") }, item.outcome || "no outcome"),
        item.error_code ? el("span", { class: "error-code" }, " " + item.error_code) : null,
        " ", el("span", { class: "mono" }, item.user_id || ""),
        " ", el("span", { class: "muted" }, item.duration_ms === null ? "" : item.duration_ms + " ms"),
        item.cold_start ? el("span", { class: "badge cold" }, `cold start · init ${item.init_duration_ms} ms`) : null);
      list.prepend(line);
    }
    while (list.children.length > 300) list.lastChild.remove();
    const fresh = data.invocations.length > 0 && state.activityPolled;
    state.activitySeen = data.last;
    state.activityPolled = true;
    if (fresh) await refreshUsers();
  } catch (error) {
    notice("activity: " + error.message, true);
  }
  setTimeout(pollActivity, 700);
}

async function start() {
  setUpActions();
  try {
    await loadStack();
    await loadUsers(false);
  } catch (error) {
    notice(error.message, true);
  }
  pollActivity();
  // A user made without a trigger (AdminCreateUser) shows without any activity: look again.
  setInterval(() => { if (!document.hidden) refreshUsers(); }, 5000);
}

start();
