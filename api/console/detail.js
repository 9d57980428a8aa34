// One posting: its fields, attempts and audit trail (notes among them), with the mapping, the
// assignee and a note to add where the office reads it.
"use strict";

import { $, api, el, MAPPING_ERRORS, mayChange, plural, postingPath, say, sayError, state, when, whenShort } from "./lib.js";
import { saveMapping, searchFor, searchOffered } from "./search.js";

export async function openDetail(paymentId, focus = null) {
  try {
    const p = await api(postingPath(paymentId));
    const detail = $("detail");
    detail.hidden = false;
    detail.dataset.paymentId = paymentId;
    $("detail-title").textContent = `Posting ${p.payment_id}`;
    const fields = $("detail-fields");
    fields.replaceChildren();
    for (const [label, value] of [["Load Status", p.load_status], ["Kind", p.kind], ["Patient account", p.patient_account_id],
      ["Practice-management patient", p.ehr_patient_id], ["Amount", p.amount && `${p.amount} ${p.currency}`],
      ["Refunded payment", p.refunded_payment_id], ["Reversed payment", p.reversed_payment_id],
      ["Dispute", p.dispute_id], ["Return code", p.return_code], ["Fee to charge", p.fee_amount],
      ["Taken back", p.taken_back && p.taken_back.length
        ? p.taken_back.map((t) => `${t.kind} ${t.payment_id} ${t.amount || ""} (${t.load_status})`).join("; ") : ""],
      ["Left of the payment", p.left && `${p.left} ${p.currency}`],
      ["Transfer", p.merchant_transfer_id], ["Received", when(p.received_at)],
      ["Late for a closed month", p.late_for_closed_period ? "Yes: it arrived after its month was closed; an office task says so." : ""],
      ["Load Error", p.load_error && `${p.load_error.code}: ${p.load_error.message}`],
      ["What fixes it", p.load_error && p.load_error.fix], ["Assignee", p.assignee],
      ["Notes", p.notes_count ? plural(p.notes_count, "note") : ""]]) {
      if (value) fields.append(el("dt", {}, label), el("dd", {}, value));
    }
    $("attempts").querySelector("tbody").replaceChildren(...p.attempts.map((a) => el("tr", {},
      el("td", {}, whenShort(a.at)), el("td", {}, String(a.duration_ms)), el("td", {}, a.outcome),
      el("td", {}, a.load_error ? a.load_error.code : ""))));
    $("audit").querySelector("tbody").replaceChildren(...p.audit.map((a) => el("tr", { class: `audit-${a.action}` },
      el("td", {}, whenShort(a.at)), el("td", {}, a.actor), el("td", {}, a.action), el("td", {}, a.reason || ""),
      el("td", {}, a.detail || ""))));
    const mappable = p.load_status === "FAILED" && p.load_error && MAPPING_ERRORS.has(p.load_error.code)
      && p.patient_account_id && mayChange();
    $("mapping-form").hidden = !mappable;
    // Beside the id: a search of the practice's system for this account's patient (section 14).
    const account = p.patient_account_id || "";
    if (mappable && searchOffered() && $("mapping-search").dataset.account !== account) {
      $("mapping-search").replaceChildren(searchFor(account, () => { $("mapping-search").hidden = true; }));
      $("mapping-search").dataset.account = account;
    }
    $("mapping-search").hidden = !mappable || !searchOffered();
    $("mapping-form").dataset.account = p.patient_account_id || "";
    $("mapping-account").textContent = p.patient_account_id || "";
    $("assignee-form").hidden = !mayChange();
    $("note-form").hidden = !mayChange();
    if (document.activeElement !== $("assignee")) $("assignee").value = p.assignee || "";
    if (focus) $(focus).focus();
  } catch (error) { say(error.message, true); }
}

const shown = () => $("detail").dataset.paymentId;

$("detail-close").addEventListener("click", () => { $("detail").hidden = true; });

$("mapping-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const account = $("mapping-form").dataset.account;
  try {
    await saveMapping(account, $("mapping-ehr").value.trim());
    $("mapping-ehr").value = "";
  } catch (error) { sayError(error); }
});

async function setAssignee(assignee) {
  const paymentId = shown();
  try {
    await api(`${postingPath(paymentId)}/assignee`, { method: "PUT", body: JSON.stringify({ assignee: assignee || null }) });
    say(assignee ? `${paymentId} is assigned to ${assignee}.` : `${paymentId} is assigned to nobody.`);
    $("assignee").value = assignee || "";
    await state.on.postingChanged(paymentId);
  } catch (error) { sayError(error); }
}

$("assignee-form").addEventListener("submit", (event) => { event.preventDefault(); setAssignee($("assignee").value.trim()); });
$("assign-me").addEventListener("click", () => setAssignee(state.name));

$("note-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const paymentId = shown();
  const text = $("note-text").value.trim();
  if (!text) return;
  try {
    const result = await api(`${postingPath(paymentId)}/notes`, { method: "POST", body: JSON.stringify({ text }) });
    $("note-text").value = "";
    say(`Note added to ${paymentId} (${plural(result.notes_count, "note")}).`);
    await state.on.postingChanged(paymentId);
  } catch (error) { sayError(error); }
});
