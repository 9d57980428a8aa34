// The open alerts (with their snoozes), the practice's system (held or answering), transfers.
"use strict";

import { $, api, el, mayChange, say, sayError, state, when } from "./lib.js";

const SNOOZES = [["1 hour", 1], ["4 hours", 4], ["1 day", 24], ["3 days", 72], ["1 week", 168]];

// ---- alerts and their snoozes (contract section 8) -----------------------------------------
export async function loadAlerts() {
  if (!state.practice) return;
  try {
    const { items } = await api(`/alerts?practice_id=${encodeURIComponent(state.practice)}&state=open`);
    $("alerts-list").replaceChildren(...(items.length ? items.map(alertFor) : [el("li", {}, "None open.")]));
  } catch (error) { /* shown on the next refresh */ }
}

function alertFor(a, index) {
  const what = `${a.kind === "task" ? "Office task" : "Patient flag"}: ${a.kind === "task" ? a.payment_id : a.patient_account_id}`;
  const item = el("li", { class: a.state, "data-alert-id": a.alert_id },
    what, a.state === "escalated" ? " (escalated)" : "", ` since ${when(a.opened_at)}`,
    a.title ? el("span", { class: "alert-title" }, `: ${a.title}`) : "");
  if (a.snoozed_until && new Date(a.snoozed_until) > new Date()) {
    item.append(el("span", { class: "snoozed" },
      ` Snoozed until ${when(a.snoozed_until)} by ${a.snoozed_by}: ${a.snooze_reason}`));
  }
  if (mayChange()) item.append(" ", ...snoozeFor(a, what, `alert-${index}`), " ", ...resolveFor(a, what, `alert-${index}`));
  return item;
}

// A reversal's alerts are resolved by the office (contract section 10): with a reason, audited.
function resolveFor(a, what, id) {
  const reason = el("input", { id: `${id}-resolve-reason`, required: true, maxlength: "500" });
  const form = el("form", { class: "snooze", hidden: true, "aria-label": `Resolve ${what}` },
    el("label", { for: `${id}-resolve-reason` }, "Reason for resolving"), " ", reason, " ",
    el("button", { type: "submit" }, "Resolve"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api(`/alerts/${encodeURIComponent(a.alert_id)}/resolve`,
        { method: "POST", body: JSON.stringify({ reason: reason.value.trim() }) });
      say(`${what} resolved.`);
      await loadAlerts();
    } catch (error) { sayError(error); }
  });
  const open = el("button", { type: "button", class: "link", "aria-expanded": "false", "aria-label": `Resolve ${what}`,
    onclick: () => { form.hidden = !form.hidden; open.setAttribute("aria-expanded", String(!form.hidden));
                     if (!form.hidden) reason.focus(); } }, "Resolve");
  return [open, form];
}

function snoozeFor(a, what, id) {
  const hours = el("select", { id: `${id}-for` }, ...SNOOZES.map(([label, h]) => el("option", { value: String(h) }, label)));
  const reason = el("input", { id: `${id}-reason`, required: true, maxlength: "500" });
  const form = el("form", { class: "snooze", hidden: true, "aria-label": `Snooze ${what}` },
    el("label", { for: `${id}-for` }, "Snooze for"), " ", hours, " ",
    el("label", { for: `${id}-reason` }, "because"), " ", reason, " ", el("button", { type: "submit" }, "Snooze"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const until = new Date(Date.now() + Number(hours.value) * 3600_000).toISOString();
    try {
      await api(`/alerts/${encodeURIComponent(a.alert_id)}/snooze`,
        { method: "POST", body: JSON.stringify({ until, reason: reason.value.trim() }) });
      say(`${what} snoozed for ${hours.selectedOptions[0].textContent}: it does not escalate before then.`);
      await loadAlerts();
    } catch (error) { sayError(error); }
  });
  const open = el("button", { type: "button", class: "link", "aria-expanded": "false", "aria-label": `Snooze ${what}`,
    onclick: () => { form.hidden = !form.hidden; open.setAttribute("aria-expanded", String(!form.hidden));
                     if (!form.hidden) hours.focus(); } }, "Snooze");
  return [open, form];
}

// ---- the practice's system: failing, held, released (contract section 7) ----------------
export async function loadSystem() {
  if (!state.practice) return;
  try {
    const practice = await api(`/practices/${encodeURIComponent(state.practice)}`);
    // The built-in ledger keeps no names: it has no patient search to offer (section 14).
    state.searchOffered = practice.ledger?.kind !== "builtin";
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

// ---- transfers ------------------------------------------------------------------------------
export async function showTransfer(transferId) {
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
