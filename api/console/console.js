// paypost console: the Merchant Transfers report. Plain JavaScript, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { token: sessionStorage.getItem("paypost.token") || "", role: "", practice: "", cursors: [null],
                page: 0, stream: null, rows: new Map(), reads: new Map() };
const MAPPING_ERRORS = new Set(["PATIENT_NOT_MAPPED", "PATIENT_NOT_FOUND"]);

async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${state.token}`, ...(options.body ? { "Content-Type": "application/json" } : {}) };
  const response = await fetch(`/api/v1${path}`, { ...options, headers });
  const body = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) {
    const error = new Error(body?.error?.message || `${response.status} ${response.statusText}`);
    error.status = response.status;
    throw error;
  }
  return body;
}

function say(text, isError = false) {
  const message = $("message");
  message.textContent = text;
  message.className = isError ? "error" : "";
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== null && value !== undefined && value !== false) node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children) node.append(child ?? "");
  return node;
}

const mayChange = () => state.role === "operator" || state.role === "admin";
const when = (iso) => (iso ? new Date(iso).toLocaleString() : "");

// ---- sign-in ---------------------------------------------------------------------------
async function signIn(token) {
  state.token = token;
  try {
    const me = await api("/whoami");
    state.role = me.role;
    sessionStorage.setItem("paypost.token", token);
    $("who-name").textContent = `${me.name} (${me.role})`;
    $("who").hidden = false;
    const { items: practices } = await api("/practices");
    const wanted = new URLSearchParams(location.search).get("practice") || localStorage.getItem("paypost.practice") || "";
    offerPractices(practices, wanted);
    $("signin").hidden = true;
    $("app").hidden = false;
    $("signin-error").textContent = "";
    if ($("f-practice").value) await show();
    else if (practices.length) $("f-practice").focus();
  } catch (error) {
    state.token = "";
    sessionStorage.removeItem("paypost.token");
    $("signin-error").textContent = error.status === 401 ? "That token is not one paypost knows." : error.message;
  }
}

// The practices the key may see: one is chosen for you; more are offered to pick from.
function offerPractices(practices, wanted) {
  const picker = $("f-practice");
  const label = (p) => (p.name && p.name !== p.practice_id ? `${p.name} (${p.practice_id})` : p.practice_id);
  picker.replaceChildren(...(practices.length === 1 ? [] : [el("option", { value: "" }, "Choose a practice")]),
    ...practices.map((p) => el("option", { value: p.practice_id }, label(p))));
  if (practices.length === 1) {
    picker.value = practices[0].practice_id;
    $("practice-picker").hidden = true;
    $("one-practice").hidden = false;
    $("one-practice").textContent = `Practice: ${label(practices[0])}`;
  } else {
    $("practice-picker").hidden = false;
    $("one-practice").hidden = true;
    picker.value = practices.some((p) => p.practice_id === wanted) ? wanted : "";
  }
  if (!practices.length) say("No practice is set up within your key's scope.", true);
}

$("f-practice").addEventListener("change", () => { if ($("f-practice").value) show(); });

$("signin-form").addEventListener("submit", (event) => { event.preventDefault(); signIn($("token").value.trim()); });
$("signout").addEventListener("click", () => {
  sessionStorage.removeItem("paypost.token");
  if (state.stream) state.stream.close();
  location.reload();
});

// ---- the report ------------------------------------------------------------------------
function filters() {
  const query = new URLSearchParams({ practice_id: state.practice, limit: "50" });
  if ($("f-status").value) query.set("status", $("f-status").value);
  if ($("f-error").value) query.set("error_code", $("f-error").value);
  if ($("f-transfer").value.trim()) query.set("merchant_transfer_id", $("f-transfer").value.trim());
  if ($("f-from").value) query.set("received_from", `${$("f-from").value}T00:00:00Z`);
  if ($("f-to").value) {
    const to = new Date(`${$("f-to").value}T00:00:00Z`);
    to.setUTCDate(to.getUTCDate() + 1);
    query.set("received_to", to.toISOString());
  }
  return query;
}

async function show(resetPaging = true, quiet = false) {
  const practice = $("f-practice").value.trim();
  if (!$("filters").reportValidity()) return;
  if (practice !== state.practice) connectStream(practice);
  state.practice = practice;
  localStorage.setItem("paypost.practice", practice);
  if (resetPaging) { state.cursors = [null]; state.page = 0; }
  const query = filters();
  const cursor = state.cursors[state.page];
  if (cursor) query.set("cursor", cursor);
  try {
    const page = await api(`/postings?${query}`);
    renderRows(page.items);
    state.cursors[state.page + 1] = page.next_cursor;
    $("older").disabled = !page.next_cursor;
    $("newer").disabled = state.page === 0;
    if (!quiet) say(`${page.items.length} row(s)${page.next_cursor ? ", more on the next page" : ""}.`);
  } catch (error) {
    say(error.message, true);
  }
  loadAlerts();
  loadSystem();
}

function renderRows(items) {
  const body = $("report").querySelector("tbody");
  body.replaceChildren();
  state.rows.clear();
  for (const item of items) body.append(rowFor(item));
  updateSave();
}

function rowFor(item) {
  const failed = item.load_status === "FAILED";
  const canChange = mayChange();
  const error = item.load_error;
  const retry = failed ? el("input", { type: "checkbox", class: "retry", "aria-label": `Retry ${item.payment_id}`,
                                        disabled: !canChange, onchange: updateSave }) : "";
  let clear = "";
  if (failed) {
    const reason = el("input", { class: "reason", hidden: true, "aria-label": `Reason to clear ${item.payment_id}`,
                                  placeholder: "reason (required)", oninput: updateSave });
    const box = el("input", { type: "checkbox", class: "clear", "aria-label": `Clear ${item.payment_id}`,
                              disabled: !canChange,
                              onchange: () => { reason.hidden = !box.checked; if (box.checked) reason.focus(); updateSave(); } });
    clear = el("span", {}, box, " ", reason);
  }
  const errorCell = error
    ? el("td", {}, el("span", { class: "error-code" }, error.code), " ", error.message,
         el("span", { class: "fix" }, `What fixes it: ${error.fix}`),
         MAPPING_ERRORS.has(error.code) && item.patient_account_id && canChange
           ? el("button", { type: "button", class: "link", onclick: () => openDetail(item.payment_id, true) },
                `Enter mapping for ${item.patient_account_id}`)
           : "")
    : el("td", {});
  const row = el("tr", { "data-payment-id": item.payment_id, "data-status": item.load_status },
    el("td", {}, when(item.received_at)),
    el("td", {}, el("button", { type: "button", class: "link", onclick: () => openDetail(item.payment_id) }, item.payment_id)),
    el("td", {}, item.kind),
    el("td", {}, item.patient_account_id || ""),
    el("td", {}, item.amount ? `${item.amount} ${item.currency || ""}` : ""),
    el("td", {}, item.method || ""),
    el("td", {}, item.merchant_transfer_id
      ? el("button", { type: "button", class: "link", onclick: () => showTransfer(item.merchant_transfer_id) }, item.merchant_transfer_id)
      : ""),
    el("td", { class: `status-${item.load_status}` }, item.load_status),
    errorCell,
    el("td", {}, retry),
    el("td", {}, clear),
  );
  state.rows.set(item.payment_id, row);
  return row;
}

function selection() {
  const retry = [], clear = [];
  let missingReason = false;
  for (const [paymentId, row] of state.rows) {
    if (row.querySelector("input.retry:checked")) retry.push(paymentId);
    if (row.querySelector("input.clear:checked")) {
      const reason = row.querySelector("input.reason").value.trim();
      if (!reason) missingReason = true;
      clear.push({ payment_id: paymentId, reason });
    }
  }
  return { retry, clear, missingReason };
}

function updateSave() {
  const { retry, clear, missingReason } = selection();
  $("save").disabled = !mayChange() || (retry.length + clear.length === 0) || missingReason;
  $("save").title = missingReason ? "Every Clear needs a reason" : "";
}

$("save").addEventListener("click", async () => {
  const { retry, clear, missingReason } = selection();
  if (missingReason) { say("Every Clear needs a reason.", true); return; }
  $("save").disabled = true;
  try {
    const { operation_id: operationId } = await api("/postings/changes", {
      method: "POST", body: JSON.stringify({ practice_id: state.practice, retry, clear }) });
    await follow(operationId);
  } catch (error) {
    say(error.status === 403 ? "Your token can view but not change anything." : error.message, true);
    updateSave();
  }
});

async function follow(operationId) {
  const progress = $("progress");
  progress.hidden = false;
  for (;;) {
    const op = await api(`/operations/${encodeURIComponent(operationId)}`);
    progress.max = op.total; progress.value = op.done;
    $("progress-text").textContent = `${op.done} of ${op.total} applied`;
    if (op.status === "completed") {
      const counts = {};
      for (const item of op.items) counts[item.result] = (counts[item.result] || 0) + 1;
      const notes = op.items.filter((i) => i.result === "rejected" || i.result === "unchanged")
                            .map((i) => `${i.payment_id}: ${i.message}`);
      await show(false, true);
      say(`Saved: ${Object.entries(counts).map(([k, v]) => `${v} ${k}`).join(", ")}.${notes.length ? " " + notes.join(" ") : ""}`);
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
}

$("filters").addEventListener("submit", (event) => { event.preventDefault(); show(); });
$("older").addEventListener("click", () => { state.page += 1; show(false); });
$("newer").addEventListener("click", () => { state.page = Math.max(0, state.page - 1); show(false); });

// ---- live updates ----------------------------------------------------------------------
function connectStream(practice) {
  if (state.stream) state.stream.close();
  const query = new URLSearchParams({ practice_id: practice, access_token: state.token });
  const stream = new EventSource(`/api/v1/events/stream?${query}`);
  state.stream = stream;
  stream.onopen = () => { $("live").textContent = "live"; $("live").classList.add("on"); };
  stream.onerror = () => { $("live").textContent = "reconnecting"; $("live").classList.remove("on"); };
  stream.addEventListener("paypost", (message) => onEvent(JSON.parse(message.data)));
}

let reloadTimer = null;
async function onEvent(event) {
  if (event.practice_id !== state.practice) return;
  const key = event.routing_key || "";
  if (key.startsWith("alert.")) { loadAlerts(); loadSystem(); }
  if (key.startsWith("transfer.") && $("transfer-id").value === event.merchant_transfer_id) showTransfer(event.merchant_transfer_id);
  if (!event.payment_id || !key.startsWith("posting.")) return;
  if (state.rows.has(event.payment_id)) {
    // Events of one posting come close together (retried, then loaded): their reads may answer
    // out of order, so only the answer to the latest read is shown, in the row as it is then.
    const seq = (state.reads.get(event.payment_id) || 0) + 1;
    state.reads.set(event.payment_id, seq);
    try {
      const item = await api(`/postings/${encodeURIComponent(state.practice)}/${encodeURIComponent(event.payment_id)}`);
      const row = state.rows.get(event.payment_id);
      if (state.reads.get(event.payment_id) !== seq || !row) return;
      row.replaceWith(rowFor(item));
      updateSave();
      if (!$("detail").hidden && $("detail").dataset.paymentId === event.payment_id) openDetail(event.payment_id);
    } catch (error) { /* the next event or a reload will show it */ }
  } else if (state.page === 0) {
    clearTimeout(reloadTimer);  // a new row: reload the first page, at most every half second
    reloadTimer = setTimeout(() => { if (!selection().retry.length && !selection().clear.length) show(false, true); }, 500);
  }
}

// ---- detail, mapping -------------------------------------------------------------------
async function openDetail(paymentId, focusMapping = false) {
  try {
    const p = await api(`/postings/${encodeURIComponent(state.practice)}/${encodeURIComponent(paymentId)}`);
    const detail = $("detail");
    detail.hidden = false;
    detail.dataset.paymentId = paymentId;
    $("detail-title").textContent = `Posting ${p.payment_id}`;
    const fields = $("detail-fields");
    fields.replaceChildren();
    for (const [label, value] of [["Load Status", p.load_status], ["Kind", p.kind], ["Patient account", p.patient_account_id],
      ["Practice-management patient", p.ehr_patient_id], ["Amount", p.amount && `${p.amount} ${p.currency}`],
      ["Refunded payment", p.refunded_payment_id], ["Transfer", p.merchant_transfer_id], ["Received", when(p.received_at)],
      ["Load Error", p.load_error && `${p.load_error.code}: ${p.load_error.message}`]]) {
      if (value) fields.append(el("dt", {}, label), el("dd", {}, value));
    }
    $("attempts").querySelector("tbody").replaceChildren(...p.attempts.map((a) => el("tr", {},
      el("td", {}, when(a.at)), el("td", {}, String(a.duration_ms)), el("td", {}, a.outcome),
      el("td", {}, a.load_error ? a.load_error.code : ""))));
    $("audit").querySelector("tbody").replaceChildren(...p.audit.map((a) => el("tr", {},
      el("td", {}, when(a.at)), el("td", {}, a.actor), el("td", {}, a.action), el("td", {}, a.reason || ""),
      el("td", {}, a.detail || ""))));
    const mappable = p.load_status === "FAILED" && p.load_error && MAPPING_ERRORS.has(p.load_error.code)
      && p.patient_account_id && mayChange();
    $("mapping-form").hidden = !mappable;
    $("mapping-form").dataset.account = p.patient_account_id || "";
    $("mapping-account").textContent = p.patient_account_id || "";
    if (mappable && focusMapping) $("mapping-ehr").focus();
  } catch (error) { say(error.message, true); }
}

$("detail-close").addEventListener("click", () => { $("detail").hidden = true; });
$("mapping-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const account = $("mapping-form").dataset.account;
  try {
    const result = await api(`/practices/${encodeURIComponent(state.practice)}/patient-accounts/${encodeURIComponent(account)}/mapping`,
      { method: "PUT", body: JSON.stringify({ ehr_patient_id: $("mapping-ehr").value.trim() }) });
    say(`Mapping saved for ${account}: ${result.retried} failed payment(s) sent back by themselves.`);
    $("mapping-ehr").value = "";
  } catch (error) { say(error.status === 403 ? "Your token can view but not change anything." : error.message, true); }
});

// ---- the practice's system: failing, held, released (contract section 7) ----------------
async function loadSystem() {
  if (!state.practice) return;
  try {
    const practice = await api(`/practices/${encodeURIComponent(state.practice)}`);
    const hold = practice.hold;
    let text = "It answers: payments load as they arrive.";
    if (hold && hold.health === "failing") {
      text = `It stopped answering at ${when(hold.since)}; ${hold.waiting} payment(s) wait and load by themselves when it answers.`;
    } else if (hold) {
      const by = hold.held_by ? `by ${hold.held_by}` : "by paypost";
      const next = hold.next_try_at ? ` One is tried again at ${when(hold.next_try_at)}.` : " Nothing is sent until released.";
      text = `HELD ${by} since ${when(hold.held_since)}: ${hold.reason} ${hold.waiting} payment(s) wait.${next}`;
    }
    $("system-state").textContent = text;
    $("system").className = hold ? "system held" : "system";
    $("hold-form").hidden = !mayChange() || Boolean(hold && hold.health === "held");
    $("release").hidden = !mayChange() || !hold;
  } catch (error) { /* shown on the next refresh */ }
}

$("hold-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    await api(`/practices/${encodeURIComponent(state.practice)}/hold`,
      { method: "POST", body: JSON.stringify({ reason: $("hold-reason").value.trim() }) });
    $("hold-reason").value = "";
    say("Held: its payments wait until you release them.");
  } catch (error) { say(error.message, true); }
  loadSystem();
});

$("release").addEventListener("click", async () => {
  try {
    await api(`/practices/${encodeURIComponent(state.practice)}/release`, { method: "POST" });
    say("Released: the held payments load by themselves, in the order received.");
  } catch (error) { say(error.message, true); }
  loadSystem();
});

// ---- alerts and transfers --------------------------------------------------------------
async function loadAlerts() {
  if (!state.practice) return;
  try {
    const { items } = await api(`/alerts?practice_id=${encodeURIComponent(state.practice)}&state=open`);
    $("alerts-list").replaceChildren(...(items.length ? items.map((a) => el("li", { class: a.state },
      `${a.kind === "task" ? "Office task" : "Patient flag"}: ${a.kind === "task" ? a.payment_id : a.patient_account_id}`,
      a.state === "escalated" ? " (escalated)" : "", ` since ${when(a.opened_at)}`)) : [el("li", {}, "None open.")]));
  } catch (error) { /* shown on the next refresh */ }
}

async function showTransfer(transferId) {
  $("transfer-id").value = transferId;
  const table = $("transfer-table");
  try {
    const t = await api(`/transfers/${encodeURIComponent(state.practice)}/${encodeURIComponent(transferId)}`);
    const line = (label, b) => el("tr", {}, el("th", { scope: "row" }, label), el("td", {}, String(b.count)), el("td", {}, b.amount));
    table.querySelector("tbody").replaceChildren(
      line("Expected", t.expected), line("Loaded", t.loaded), line("Cleared", t.cleared), line("Failed", t.failed),
      line("Pending", t.pending),
      el("tr", {}, el("th", { scope: "row" }, "Fees"), el("td", {}), el("td", {}, t.fees_amount)),
      el("tr", {}, el("th", { scope: "row" }, "Variance"), el("td", {}), el("td", {}, t.variance)),
      el("tr", {}, el("th", { scope: "row" }, "Balanced"), el("td", { colspan: 2, class: t.balanced ? "status-LOADED" : "status-FAILED" }, t.balanced ? "Yes" : "No")));
    table.hidden = false;
  } catch (error) {
    table.hidden = true;
    say(error.message, true);
  }
}

$("transfer-form").addEventListener("submit", (event) => { event.preventDefault(); showTransfer($("transfer-id").value.trim()); });

if (state.token) signIn(state.token);
