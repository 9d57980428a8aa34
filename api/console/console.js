// paypost console: what needs attention, the counts per Load Status, and the Merchant Transfers
// report, with one Save Changes at the top. Plain JavaScript modules, no build step.
"use strict";

import { loadAlerts, loadSystem, showTransfer } from "./alerts.js";
import { openDetail } from "./detail.js";
import { $, api, el, focusUnlessMoved, mayChange, plural, postingPath, say, sayError, span, state, whenShort } from "./lib.js";
import { hideMonthEnd, loadMonthEnd } from "./month.js";
import { onOpen, showOverview } from "./overview.js";
import { groupSelection, loadGroups, loadSummary } from "./triage.js";

const CANARY_FROM = 20;  // a retry of this many payments or more is offered a canary
const CANARY_SIZE = 5;
let pending = null;  // the Save Changes whose dry run is shown, waiting for Apply

// ---- sign-in ---------------------------------------------------------------------------
async function signIn(token) {
  state.token = token;
  try {
    const me = await api("/whoami");
    state.role = me.role;
    state.name = me.name;
    sessionStorage.setItem("paypost.token", token);
    $("who-name").textContent = `${me.name} (${me.role})`;
    $("who").hidden = false;
    const { items: practices } = await api("/practices");
    const wanted = new URLSearchParams(location.search).get("practice") || localStorage.getItem("paypost.practice") || "";
    offerPractices(practices, wanted);
    $("signin").hidden = true;
    $("app").hidden = false;
    $("signin-error").textContent = "";
    // It opens on something useful at once: the practice chosen last time (or the only one) at its
    // Needs attention; else, for a key with several, every practice with what needs attention first.
    const since = document.activeElement;
    if ($("f-practice").value) {
      await show();
      focusUnlessMoved(since, "attention-title");
    } else if (practices.length) {
      await showOverview();
      focusUnlessMoved(since, "overview-title");
    }
  } catch (error) {
    state.token = "";
    sessionStorage.removeItem("paypost.token");
    $("signin-error").textContent = error.status === 401 ? "That token is not one paypost knows." : error.message;
  }
}

// The practices the key may see: one is chosen for you; a few are all shown at once, as a list
// to pick from (every name in sight, not behind a closed drop-down); many, in a drop-down.
const LISTED_PRACTICES = 6;
function offerPractices(practices, wanted) {
  const picker = $("f-practice");
  const label = (p) => (p.name && p.name !== p.practice_id ? `${p.name} (${p.practice_id})` : p.practice_id);
  const listed = practices.length > 1 && practices.length <= LISTED_PRACTICES;
  picker.size = listed ? practices.length : 0;
  picker.replaceChildren(...(practices.length === 1 || listed ? [] : [el("option", { value: "" }, "Choose a practice")]),
    ...practices.map((p) => el("option", { value: p.practice_id }, label(p))));
  $("all-practices").hidden = practices.length < 2;
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

// From the overview: that practice (one with payments but not set up is offered for the while).
onOpen(async (practiceId, label) => {
  const picker = $("f-practice");
  if (![...picker.options].some((o) => o.value === practiceId)) picker.append(el("option", { value: practiceId }, label));
  picker.value = practiceId;
  const since = document.activeElement;
  await show();
  focusUnlessMoved(since, "attention-title");
});
$("all-practices").addEventListener("click", async () => {
  localStorage.removeItem("paypost.practice");  // the next sign-in opens on the overview too
  if (state.stream) state.stream.close();
  state.stream = null;
  state.practice = "";
  hideMonthEnd();
  $("live").textContent = "offline"; $("live").classList.remove("on");
  const since = document.activeElement;
  await showOverview();
  focusUnlessMoved(since, "overview-title");
});
$("signin-form").addEventListener("submit", (event) => { event.preventDefault(); signIn($("token").value.trim()); });
$("signout").addEventListener("click", () => {
  sessionStorage.removeItem("paypost.token");
  if (state.stream) state.stream.close();
  location.reload();
});

// ---- the report ------------------------------------------------------------------------
function filters() {
  const query = new URLSearchParams({ practice_id: state.practice, limit: "50", ...span() });
  if ($("f-status").value) query.set("status", $("f-status").value);
  if ($("f-error").value) query.set("error_code", $("f-error").value);
  if ($("f-transfer").value.trim()) query.set("merchant_transfer_id", $("f-transfer").value.trim());
  return query;
}

async function show(resetPaging = true, quiet = false) {
  const practice = $("f-practice").value.trim();
  if (!$("filters").reportValidity()) return;
  const changed = practice !== state.practice;
  if (changed) { connectStream(practice); state.groups.clear(); state.searchOffered = undefined; }
  state.practice = practice;
  localStorage.setItem("paypost.practice", practice);
  $("practices-overview").hidden = true;
  $("practice-view").hidden = false;
  if (changed) await loadSystem();  // what its system offers (a patient search) before the groups show
  if (resetPaging) { state.cursors = [null]; state.page = 0; }
  const query = filters();
  const cursor = state.cursors[state.page];
  if (cursor) query.set("cursor", cursor);
  const others = Promise.all([loadGroups(), loadSummary(), loadAlerts(), loadSystem(), ...(changed ? [loadMonthEnd()] : [])]);
  try {
    const page = await api(`/postings?${query}`);
    renderRows(page.items);
    state.cursors[state.page + 1] = page.next_cursor;
    $("older").disabled = !page.next_cursor;
    $("newer").disabled = state.page === 0;
    if (!quiet) say(`${plural(page.items.length, "row")}${page.next_cursor ? ", more on the next page" : ""}.`);
  } catch (error) {
    say(error.message, true);
  }
  await others;
}
state.on.refresh = () => show();

function renderRows(items) {
  const body = $("report").querySelector("tbody");
  body.replaceChildren();
  state.rows.clear();
  for (const item of items) body.append(rowFor(item));
  updateSave();
}

function choices(item) {
  const canChange = mayChange();
  const retry = el("input", { type: "checkbox", class: "retry", "aria-label": `Retry ${item.payment_id}`,
                              disabled: !canChange, onchange: updateSave });
  const reason = el("input", { class: "reason", hidden: true, "aria-label": `Reason to clear ${item.payment_id}`,
                               placeholder: "reason", required: true, oninput: updateSave });
  const box = el("input", { type: "checkbox", class: "clear", "aria-label": `Clear ${item.payment_id}`, disabled: !canChange,
                            onchange: () => { reason.hidden = !box.checked; if (box.checked) reason.focus(); updateSave(); } });
  return [retry, el("span", {}, box, " ", reason)];
}

// A Load Error code may break after its underscores in a narrow column, and nowhere else.
const breakable = (code) => code.split("_").flatMap((part, i) => (i ? ["_", el("wbr"), part] : [part]));

function rowFor(item) {
  const [retry, clear] = item.load_status === "FAILED" ? choices(item) : ["", ""];
  const error = item.load_error;
  // The row says what went wrong; what fixes it is said once, for its group, under Needs attention.
  // A long message is cut to two lines here; the whole of it is its title (on hover) and in the detail.
  const errorCell = error ? el("td", { class: "load-error" }, el("span", { class: "error-code" }, ...breakable(error.code)), " ",
                               el("span", { class: "msg", title: error.message }, error.message)) : el("td", {});
  const link = (text, label, onclick) => el("button", { type: "button", class: "link", "aria-label": label, onclick }, text);
  const row = el("tr", { "data-payment-id": item.payment_id, "data-status": item.load_status },
    el("td", { class: "received" }, whenShort(item.received_at)),
    el("td", { class: "id" }, link(item.payment_id, null, () => openDetail(item.payment_id, "detail-title"))),
    el("td", {}, item.method ? `${item.kind}, ${item.method}`
      : (item.reversed_payment_id ? `${item.kind} of ${item.reversed_payment_id}` : item.kind)),
    el("td", { class: "id" }, item.patient_account_id || ""),
    el("td", { class: "num" }, item.amount ? `${item.amount} ${item.currency || ""}` : ""),
    el("td", { class: "id" }, item.merchant_transfer_id ? link(item.merchant_transfer_id, null, () => showTransfer(item.merchant_transfer_id)) : ""),
    el("td", { class: `status-${item.load_status}` }, item.load_status,
       item.late_for_closed_period ? el("span", { class: "late", title: "It arrived after its month was closed." }, " late") : ""),
    errorCell,
    el("td", { class: "assignee" }, item.assignee || ""),
    el("td", { class: "notes" }, item.notes_count
      ? link(plural(item.notes_count, "note"), `${plural(item.notes_count, "note")} on ${item.payment_id}`,
             () => openDetail(item.payment_id, "audit-title"))
      : ""),
    el("td", {}, retry),
    el("td", {}, clear),
  );
  state.rows.set(item.payment_id, row);
  return row;
}

// A posting changed where the office works on it (a note, an assignee): its row and detail again.
async function refreshPosting(paymentId) {
  const seq = (state.reads.get(paymentId) || 0) + 1;
  state.reads.set(paymentId, seq);
  try {
    const item = await api(postingPath(paymentId));
    const row = state.rows.get(paymentId);
    if (state.reads.get(paymentId) !== seq) return;
    if (row) {
      const ticked = { retry: row.querySelector("input.retry")?.checked, clear: row.querySelector("input.clear")?.checked,
                       reason: row.querySelector("input.reason")?.value };
      const fresh = rowFor(item);
      if (item.load_status === "FAILED") keepTicks(fresh, ticked);
      row.replaceWith(fresh);
      updateSave();
    }
    if (!$("detail").hidden && $("detail").dataset.paymentId === paymentId) await openDetail(paymentId);
  } catch (error) { /* the next event or a reload will show it */ }
}
state.on.postingChanged = refreshPosting;

function keepTicks(row, ticked) {
  if (ticked.retry) row.querySelector("input.retry").checked = true;
  if (ticked.clear) {
    row.querySelector("input.clear").checked = true;
    const reason = row.querySelector("input.reason");
    reason.hidden = false;
    reason.value = ticked.reason || "";
  }
}

// ---- Save Changes ----------------------------------------------------------------------
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
  const groups = groupSelection();
  return { retry, clear, groups, missingReason: missingReason || groups.missingReason };
}

function countText({ retry, clear, groups }) {
  const parts = [];
  const nGroups = groups.retryGroups.length + groups.clearGroups.length;
  if (nGroups) parts.push(`${plural(nGroups, "group")} (${plural(groups.payments, "payment")})`);
  if (retry.length + clear.length) parts.push(plural(retry.length + clear.length, "payment"));
  if (!parts.length) return "Nothing ticked.";
  const doing = [];
  if (retry.length || groups.retryGroups.length) doing.push("retry");
  if (clear.length || groups.clearGroups.length) doing.push("clear");
  return `${parts.join(" and ")} ticked to ${doing.join(" or ")}.`;
}

function updateSave() {
  const chosen = selection();
  const none = chosen.retry.length + chosen.clear.length + chosen.groups.retryGroups.length
    + chosen.groups.clearGroups.length === 0;
  $("save").disabled = !mayChange() || none || chosen.missingReason;
  $("save").title = chosen.missingReason ? "Every Clear needs a reason" : "";
  $("save-count").textContent = countText(chosen) + (chosen.missingReason ? " Every Clear needs a reason." : "");
  if (pending && JSON.stringify(changesBody(chosen)) !== JSON.stringify(pending)) {
    pending = null;  // a preview stands for the selection it was made of
    $("preview").hidden = true;
  }
}
state.on.selectionChanged = updateSave;

function changesBody({ retry, clear, groups }) {
  return { practice_id: state.practice, retry, clear, retry_groups: groups.retryGroups, clear_groups: groups.clearGroups };
}

$("save").addEventListener("click", async () => {
  const chosen = selection();
  if (chosen.missingReason) { say("Every Clear needs a reason.", true); return; }
  const body = changesBody(chosen);
  $("save").disabled = true;
  try {
    // A group stands for its FAILED payments now: say how many before anything is applied.
    if (body.retry_groups.length || body.clear_groups.length) await preview(body);
    else await apply(body);
  } catch (error) {
    sayError(error);
    updateSave();
  }
});

async function preview(body) {
  const dry = await api("/postings/changes?dry_run=true", { method: "POST", body: JSON.stringify(body) });
  const counts = {};
  for (const item of dry.items) counts[item.result] = (counts[item.result] || 0) + 1;
  const retried = counts.retried || 0;
  const words = [["retried", "retry"], ["cleared", "clear"]].filter(([k]) => counts[k]).map(([k, verb]) => `${verb} ${counts[k]}`);
  const left = ["unchanged", "rejected"].filter((k) => counts[k]).map((k) => `${counts[k]} ${k}`);
  $("preview-text").textContent = `Save Changes would ${words.join(" and ") || "change nothing"} now`
    + ` (${plural(dry.total, "payment")} in all${left.length ? `; ${left.join(", ")}` : ""}).`;
  $("canary-choice").hidden = retried < CANARY_FROM;
  $("canary-size").textContent = String(CANARY_SIZE);
  $("canary").checked = true;
  pending = body;
  $("preview").hidden = false;
  $("preview-apply").focus();
}

$("preview-apply").addEventListener("click", async () => {
  if (!pending) return;
  const body = { ...pending, ...(!$("canary-choice").hidden && $("canary").checked ? { canary: CANARY_SIZE } : {}) };
  pending = null;
  $("preview").hidden = true;
  try { await apply(body); } catch (error) { sayError(error); updateSave(); }
});
$("preview-cancel").addEventListener("click", () => { pending = null; $("preview").hidden = true; updateSave(); $("save").focus(); });

async function apply(body) {
  const { operation_id: operationId } = await api("/postings/changes", { method: "POST", body: JSON.stringify(body) });
  await follow(operationId);
}

// Stop: the running Save Changes is cancelled; what is not yet replayed stays FAILED.
let following = null;
$("stop").addEventListener("click", async () => {
  if (!following) return;
  $("stop").disabled = true;
  try {
    await api(`/operations/${encodeURIComponent(following)}/cancel`, { method: "POST" });
  } catch (error) {
    if (error.status !== 409) { sayError(error); $("stop").disabled = false; }  // 409: it had finished
  }
});

async function follow(operationId) {
  const progress = $("progress");
  progress.hidden = false;
  following = operationId;
  $("stop").hidden = false; $("stop").disabled = false;
  try { await track(operationId, progress); } finally { following = null; $("stop").hidden = true; }
}

async function track(operationId, progress) {
  for (;;) {
    const op = await api(`/operations/${encodeURIComponent(operationId)}`);
    progress.max = op.total; progress.value = op.done;
    const canary = op.canary && op.canary.state === "waiting" ? ` (trying ${op.canary.size} first)` : "";
    const stopping = op.cancelled_at && op.status !== "cancelled" ? " (stopping)" : "";
    $("progress-text").textContent = `${op.done} of ${op.total} applied${canary}${stopping}`;
    if (op.status === "completed" || op.status === "cancelled") {
      const counts = {};
      for (const item of op.items) counts[item.result] = (counts[item.result] || 0) + 1;
      const notes = op.items.filter((i) => i.result === "rejected" || i.result === "unchanged")
                            .slice(0, 10).map((i) => `${i.payment_id}: ${i.message}`);
      await show(false, true);
      const saved = op.status === "cancelled" ? `Stopped by ${op.cancelled_by}; not replayed items stay FAILED` : "Saved";
      say(`${saved}: ${Object.entries(counts).map(([k, v]) => `${v} ${k}`).join(", ")}.`
          + `${op.message ? ` ${op.message}` : ""}${notes.length ? " " + notes.join(" ") : ""}`);
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
}

$("filters").addEventListener("submit", (event) => { event.preventDefault(); show(); });
$("older").addEventListener("click", () => { state.page += 1; show(false); });
$("newer").addEventListener("click", () => { state.page = Math.max(0, state.page - 1); show(false); });

// ---- live updates ----------------------------------------------------------------------
// The feed opens with a single-use ticket asked for with the key in a header: the key never goes
// into a URL (where proxies log it). A ticket works once, so each reconnection asks for a new one.
let reconnectTimer = null;
async function connectStream(practice) {
  clearTimeout(reconnectTimer);
  if (state.stream) state.stream.close();
  state.stream = null;
  let ticket;
  try {
    ({ ticket } = await api("/events/tickets", { method: "POST" }));
  } catch (error) {
    $("live").textContent = error.status === 401 ? "offline: the key was revoked or has expired" : "reconnecting";
    $("live").classList.remove("on");
    if (error.status !== 401) reconnectTimer = setTimeout(() => connectStream(practice), 3000);
    return;
  }
  if (practice !== state.practice) return;  // another practice was chosen meanwhile
  const query = new URLSearchParams({ practice_id: practice, ticket });
  const stream = new EventSource(`/api/v1/events/stream?${query}`);
  state.stream = stream;
  stream.onopen = () => { $("live").textContent = "live"; $("live").classList.add("on"); };
  stream.onerror = () => {
    // The browser would reconnect with the same, used ticket: close, and open again with a new one.
    stream.close();
    if (state.stream !== stream) return;
    $("live").textContent = "reconnecting"; $("live").classList.remove("on");
    reconnectTimer = setTimeout(() => connectStream(practice), 2000);
  };
  stream.addEventListener("paypost", (message) => onEvent(JSON.parse(message.data)));
  // The key was revoked or has expired while the feed was open: stop, and say so (no reconnecting).
  stream.addEventListener("end", (message) => {
    stream.close();
    state.stream = null;
    $("live").textContent = `offline: ${JSON.parse(message.data).reason}`;
    $("live").classList.remove("on");
  });
}

let reloadTimer = null, tallyTimer = null;
function onEvent(event) {
  if (event.practice_id !== state.practice) return;
  const key = event.routing_key || "";
  if (key.startsWith("alert.")) { loadAlerts(); loadSystem(); }
  if (key.startsWith("transfer.") && $("transfer-id").value === event.merchant_transfer_id) showTransfer(event.merchant_transfer_id);
  if (!event.payment_id || !key.startsWith("posting.")) return;
  clearTimeout(tallyTimer);  // the groups and the counts follow, at most every half second
  tallyTimer = setTimeout(() => { loadGroups(); loadSummary(); }, 500);
  if (state.rows.has(event.payment_id)) {
    // Events of one posting come close together (retried, then loaded): their reads may answer
    // out of order, so only the answer to the latest read is shown, in the row as it is then.
    refreshPosting(event.payment_id);
  } else if (state.page === 0) {
    clearTimeout(reloadTimer);  // a new row: reload the first page, at most every half second
    reloadTimer = setTimeout(() => {
      const chosen = selection();
      if (!chosen.retry.length && !chosen.clear.length) show(false, true);
    }, 500);
  }
}

if (state.token) signIn(state.token);
