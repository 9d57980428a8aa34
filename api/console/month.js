// The month end of the practice shown (contract section 11): the month's figures and blockers, its
// close (forced past its blockers only with a reason), the bank's deposits matched or not, and aging.
"use strict";

import { $, api, download, el, mayChange, plural, say, sayError, state, when } from "./lib.js";

// What each blocker means to the office, and where it is fixed.
const BLOCKERS = {
  failed_postings: (n) => `${plural(n, "payment")} FAILED: retry or clear them in the report`,
  held_postings: (n) => `${plural(n, "payment")} HELD while the practice's system is held: release it`,
  waiting_postings: (n) => `${plural(n, "payment")} still loading`,
  clears_not_verified: (n) => `${plural(n, "cleared payment")} not found in the ledger: check each was posted by hand`,
  transfers_not_reconciled: (n) => `${plural(n, "merchant transfer")} not reconciled with ${n === 1 ? "its" : "their"} payments`,
  deposits_not_matched: (n) => `${plural(n, "bank deposit")} not matched to a transfer: match below`,
};
const blockerText = (kind, n) => (BLOCKERS[kind] ? BLOCKERS[kind](n)
  : (kind.startsWith("open_") ? `${plural(n, `open office task for a ${kind.slice(5, -6).replaceAll("_", " ")}`,
                                             `open office tasks for ${kind.slice(5, -6).replaceAll("_", " ")}s`)}`
    : `${n} ${kind}`));

const BUCKETS = ["0-2", "3-5", "6-10", "over-10"];
let forcing = false;  // the last close was refused for its blockers: the form now offers to force it

// The month an office closes is most often the one just ended: the picker starts there.
function lastMonth() {
  const now = new Date();
  const first = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 1, 1));
  return first.toISOString().slice(0, 7);
}

export async function showMonthEnd() {
  if (!$("m-month").value) $("m-month").value = lastMonth();
  $("practice-main").hidden = true;
  $("month-end").hidden = false;
  $("month-end-title").focus();
  await loadMonthEnd();
}

export function hideMonthEnd() {
  $("month-end").hidden = true;
  $("practice-main").hidden = false;
}

export async function loadMonthEnd() {
  if ($("month-end").hidden || !state.practice) return;
  setForcing(false);
  await Promise.all([loadPeriod(), loadDeposits(), loadAging()]);
}

const practicePath = () => `/practices/${encodeURIComponent(state.practice)}`;
const total = (t) => `${t.count} for ${t.amount}`;

// ---- the month -----------------------------------------------------------------------------
async function loadPeriod() {
  const month = $("m-month").value;
  if (!/^\d{4}-\d{2}$/.test(month)) return;
  try {
    showPeriod(await api(`${practicePath()}/periods/${month}`));
  } catch (error) {
    $("m-state").textContent = error.message;
    $("m-state").className = "error";
    $("m-figures").querySelector("tbody").replaceChildren();
    $("m-blockers").replaceChildren();
    $("close-form").hidden = true;
  }
}

function showPeriod(p) {
  const closed = p.closed;
  $("m-state").className = closed ? "closed" : (p.ready ? "ready" : "not-ready");
  $("m-state").textContent = closed
    ? `${p.month} is closed: by ${closed.closed_by} on ${when(closed.closed_at)}`
      + (closed.forced ? `, forced past its blockers because ${closed.reason}` : "") + (closed.note ? ` (${closed.note})` : "")
    : (p.ready ? `${p.month} is ready to close.` : `${p.month} is not ready to close: ${plural(p.blockers.length, "blocker")}.`);
  $("m-csv").textContent = `Download ${p.month}'s rows (CSV)`;
  const lines = [
    ...Object.entries(p.by_kind).map(([kind, t]) => [`${kind[0].toUpperCase()}${kind.slice(1)}s`, total(t)]),
    ...Object.entries(p.by_status).map(([status, t]) => [`${status}`, total(t)]),
    ["Cleared, verified in the ledger", total(p.clears.verified)],
    ["Cleared, not verified", total(p.clears.not_verified)],
    ["Transfers reconciled", total(p.transfers.reconciled)],
    ["Transfers not reconciled", total(p.transfers.not_reconciled)],
    ["Deposits matched", total(p.deposits.matched)],
    ["Deposits not matched", total(p.deposits.not_matched)],
    ["Late for a closed month", total(p.late_for_closed_period)
      + (p.late_payment_ids.length ? `: ${p.late_payment_ids.join(", ")}` : "")],
    ["Net amount loaded or cleared", `${p.net_amount} (${p.time_zone})`],
  ];
  $("m-figures").querySelector("tbody").replaceChildren(...lines.map(([label, value]) =>
    el("tr", {}, el("th", { scope: "row" }, label), el("td", {}, value))));
  $("m-blockers").replaceChildren(...p.blockers.map((b) =>
    el("li", { "data-kind": b.kind }, blockerText(b.kind, b.count), ` (${b.amount})`)));
  $("close-form").hidden = Boolean(closed) || !mayChange();
}

function setForcing(on) {
  forcing = on;
  $("force-choice").hidden = !on;
  $("m-force").checked = false;
  $("m-force-reason").required = false;
  $("m-force-reason").disabled = true;
}

$("m-force").addEventListener("change", () => {
  $("m-force-reason").disabled = !$("m-force").checked;
  $("m-force-reason").required = $("m-force").checked;
  if ($("m-force").checked) $("m-force-reason").focus();
});

$("close-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const month = $("m-month").value;
  const force = forcing && $("m-force").checked;
  const body = { note: $("m-note").value.trim(), ...(force ? { force: true, reason: $("m-force-reason").value.trim() } : {}) };
  try {
    showPeriod(await api(`${practicePath()}/periods/${month}/close`, { method: "POST", body: JSON.stringify(body) }));
    say(`${month} is closed${force ? ", forced past its blockers" : ""}.`);
    setForcing(false);
    $("m-note").value = "";
  } catch (error) {
    if (error.status === 409 && error.body?.error?.code === "period_not_ready") {
      setForcing(true);
      say(`${month} was not closed: ${plural(error.body.error.blockers.length, "blocker")} stand in its way. `
          + "Fix them, or close it anyway with a reason.", true);
      await loadPeriod();
      $("m-force").focus();
    } else sayError(error);
  }
});

$("m-csv").addEventListener("click", async () => {
  const month = $("m-month").value;
  try { await download(`${practicePath()}/periods/${month}.csv`, `${state.practice}-${month}.csv`); } catch (error) { sayError(error); }
});
$("m-form").addEventListener("submit", (event) => { event.preventDefault(); loadMonthEnd(); });
$("open-month").addEventListener("click", showMonthEnd);
$("close-month").addEventListener("click", () => { hideMonthEnd(); $("report-title").focus(); });

// ---- the bank's deposits -------------------------------------------------------------------
async function loadDeposits() {
  const status = $("d-status").value;
  try {
    const { items } = await api(`${practicePath()}/deposits${status ? `?status=${status}` : ""}`);
    $("deposits").querySelector("tbody").replaceChildren(...items.map(depositRow));
    $("deposits-none").hidden = items.length > 0;
  } catch (error) { sayError(error); }
}

function depositRow(d) {
  const transfers = d.status === "ambiguous"
    ? `one of: ${d.candidates.map((c) => c.join(" + ")).join("; ")}`
    : d.merchant_transfer_ids.join(", ");
  const action = !mayChange() ? "" : el("button", {
    type: "button", class: "link", "aria-label": `${d.status === "matched" ? "Unmatch" : "Match"} ${d.deposit_id}`,
    onclick: () => openDepositForm(d) }, d.status === "matched" ? "Unmatch" : "Match");
  return el("tr", { "data-deposit-id": d.deposit_id, class: `deposit-${d.status}` },
    el("td", { class: "id" }, d.deposit_id), el("td", {}, when(d.deposited_at)),
    el("td", { class: "num" }, `${d.amount} ${d.currency}`), el("td", {}, d.status),
    el("td", { class: "id" }, transfers), el("td", { class: "num" }, d.difference ?? ""), el("td", {}, action));
}

let depositShown = null;
function openDepositForm(d) {
  depositShown = d;
  const matching = d.status !== "matched";
  $("deposit-form-title").textContent = `${matching ? "Match" : "Unmatch"} deposit ${d.deposit_id} (${d.amount} ${d.currency})`;
  $("d-transfers-label").hidden = !matching;
  $("d-transfers").required = matching;
  $("d-transfers").value = matching && d.candidates?.length ? d.candidates[0].join(", ") : "";
  $("d-candidates").replaceChildren(...(matching && d.candidates?.length > 1 ? d.candidates.map((c) =>
    el("button", { type: "button", class: "link", onclick: () => { $("d-transfers").value = c.join(", "); } },
       `Use ${c.join(" + ")}`)) : []));
  $("d-reason").value = "";
  $("d-submit").textContent = matching ? "Match" : "Unmatch";
  $("deposit-form").hidden = false;
  (matching ? $("d-transfers") : $("d-reason")).focus();
}

$("d-cancel").addEventListener("click", () => { $("deposit-form").hidden = true; depositShown = null; });
$("d-status").addEventListener("change", loadDeposits);

$("deposit-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const d = depositShown;
  if (!d) return;
  const matching = d.status !== "matched";
  const reason = $("d-reason").value.trim();
  const body = matching
    ? { merchant_transfer_ids: $("d-transfers").value.split(/[\s,+]+/).filter(Boolean), reason }
    : { reason };
  try {
    const after = await api(`${practicePath()}/deposits/${encodeURIComponent(d.deposit_id)}/${matching ? "match" : "unmatch"}`,
      { method: "POST", body: JSON.stringify(body) });
    say(`Deposit ${d.deposit_id} is ${after.status}${after.merchant_transfer_ids.length
      ? ` to ${after.merchant_transfer_ids.join(", ")}` : ""}.`);
    $("deposit-form").hidden = true;
    depositShown = null;
    await Promise.all([loadDeposits(), loadAging(), loadPeriod()]);
  } catch (error) { sayError(error); }
});

// ---- aging ---------------------------------------------------------------------------------
async function loadAging() {
  try {
    const a = await api(`${practicePath()}/aging`);
    $("aging").querySelector("tbody").replaceChildren(
      agingRow("Transfers without a deposit", a.transfers), agingRow("Deposits without a transfer", a.deposits));
  } catch (error) { sayError(error); }
}

function agingRow(label, buckets) {
  return el("tr", {}, el("th", { scope: "row" }, label), ...BUCKETS.map((b) => {
    const t = buckets[b] || { count: 0, amount: "0.00" };
    return el("td", { class: `num${b === "over-10" && t.count ? " error" : ""}` }, t.count ? `${t.count} (${t.amount})` : "0");
  }));
}
