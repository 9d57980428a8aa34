// "Needs attention": the practice's failure groups, largest first, each with what fixes it, said
// once for the group; and the counts and amounts per Load Status for the chosen dates.
"use strict";

import { $, api, el, MAPPING_ERRORS, mayChange, plural, sayError, span, state, when } from "./lib.js";
import { saveMapping, searchFor, searchOffered } from "./search.js";

const STATUSES = ["FAILED", "HELD", "RETRYING", "PENDING", "LOADED", "CLEARED"];

// ---- counts and amounts per Load Status ---------------------------------------------------
export async function loadSummary() {
  if (!state.practice) return;
  const query = new URLSearchParams({ practice_id: state.practice, ...span() });
  try {
    const s = await api(`/postings/summary?${query}`);
    const from = $("f-from").value, to = $("f-to").value;
    $("summary-span").textContent = from || to
      ? `Received ${from ? `from ${from}` : ""}${from && to ? " " : ""}${to ? `to ${to}` : ""} (inclusive).`
      : "Received at any time.";
    const line = (status, b) => el("tr", { "data-status": status },
      el("th", { scope: "row" }, el("button", { type: "button", class: "link", "aria-label": `Show the ${status} payments`,
                                                 onclick: () => { $("f-status").value = status; state.on.refresh(); } },
                                    status)),
      el("td", { class: "num" }, String(b.count)), el("td", { class: "num" }, b.amount));
    $("summary-table").querySelector("tbody").replaceChildren(
      ...STATUSES.map((status) => line(status, s.statuses[status])),
      el("tr", { class: "total", "data-status": "total" }, el("th", { scope: "row" }, "All"),
         el("td", { class: "num" }, String(s.total.count)), el("td", { class: "num" }, s.total.amount)));
  } catch (error) { /* shown on the next refresh */ }
}

// ---- failure groups -------------------------------------------------------------------------
function causeText(g) {
  if (!g.cause) return "";
  if (MAPPING_ERRORS.has(g.error_code)) return `patient account ${g.cause}`;
  if (g.error_code === "ORIGINAL_PAYMENT_NOT_LOADED") return `refunds and reversals of payment ${g.cause}`;
  if (g.error_code === "REVERSAL_EXCEEDS_PAYMENT") return `more taken back than payment ${g.cause}`;
  if (g.error_code === "LEDGER_REJECTED") return `the ledger said: ${g.cause}`;
  return g.cause;
}

export async function loadGroups() {
  if (!state.practice) return;
  let items;
  try {
    ({ items } = await api(`/failure-groups?practice_id=${encodeURIComponent(state.practice)}`));
  } catch (error) { return; }
  // What was ticked in a group that is still there stays ticked (a live reload must not lose it).
  // So does a patient search open in it, with what was typed and found, and the focus.
  const focused = document.activeElement;
  const kept = new Map([...state.groups].map(([id, g]) => [id, {
    retry: g.node.querySelector("input.retry-group")?.checked, clear: g.node.querySelector("input.clear-group")?.checked,
    reason: g.node.querySelector("input.group-reason")?.value || "", search: g.search }]));
  state.groups.clear();
  const list = $("groups");
  list.replaceChildren(...items.map((g) => groupFor(g, kept.get(g.group_id))));
  if (focused && focused !== document.activeElement && document.contains(focused)) focused.focus();
  $("attention-none").hidden = items.length > 0;
  state.on.selectionChanged();
}

function groupFor(g, was) {
  const id = `group-${g.group_id}`;
  const cause = causeText(g);
  const canChange = mayChange();
  const title = el("h3", { id: `${id}-title` },
    `${plural(g.count, "payment")}, ${g.amount}: `, el("span", { class: "error-code" }, g.error_code),
    cause ? `, ${cause}` : "");
  const node = el("li", { class: "group", "data-group-id": g.group_id, "data-error-code": g.error_code,
                          "data-cause": g.cause || "", "aria-labelledby": `${id}-title` },
    title,
    el("p", {}, g.message, " ", el("span", { class: "muted" },
      g.first_failed_at === g.last_failed_at ? `Failed ${when(g.first_failed_at)}.`
        : `Failing since ${when(g.first_failed_at)}, last ${when(g.last_failed_at)}.`)),
    el("p", { class: "fix" }, el("strong", {}, "What fixes it: "), g.fix));
  const actions = el("div", { class: "actions" });
  let search = null;
  if (MAPPING_ERRORS.has(g.error_code) && g.cause && canChange) {
    const parts = mappingFor(g, id, was?.search);
    search = parts.find((part) => part.classList.contains("patient-search")) || null;
    actions.append(...parts);
  }
  actions.append(...choicesFor(g, id, canChange, was || {}));
  node.append(actions);
  state.groups.set(g.group_id, { group: g, node, search });
  return node;
}

// Fix the cause where paypost can: the patient account's mapping (paypost then retries by itself).
function mappingFor(g, id, keptSearch = null) {
  const input = el("input", { id: `${id}-ehr`, required: true, autocomplete: "off" });
  const form = el("form", { class: "group-mapping", hidden: true },
    el("label", { for: `${id}-ehr` }, `Practice-management patient id for ${g.cause}`), " ", input, " ",
    el("button", { type: "submit" }, "Save mapping"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await saveMapping(g.cause, input.value.trim());
      input.value = "";
      form.hidden = true;
    } catch (error) { sayError(error); }
  });
  const open = el("button", { type: "button", "aria-expanded": "false", "aria-controls": `${id}-ehr`,
    onclick: () => { form.hidden = !form.hidden; open.setAttribute("aria-expanded", String(!form.hidden));
                     if (!form.hidden) input.focus(); } }, `Enter mapping for ${g.cause}`);
  if (!searchOffered()) return [open, form];
  // Beside it: find the patient in the practice's system, and choose them (section 14).
  const search = keptSearch || searchFor(g.cause);
  if (!keptSearch) search.hidden = true;
  const find = el("button", { type: "button", "aria-expanded": String(!search.hidden),
    onclick: () => { search.hidden = !search.hidden; find.setAttribute("aria-expanded", String(!search.hidden));
                     if (!search.hidden) search.querySelector("input").focus(); } }, `Find the patient of ${g.cause}`);
  return [open, find, form, search];
}

// Retry or clear the whole group: ticked here, applied by Save Changes at the top of the screen.
function choicesFor(g, id, canChange, was) {
  const described = `${id}-title`;
  const reason = el("input", { class: "group-reason", id: `${id}-reason`, hidden: !was.clear, maxlength: "2000",
                               value: was.reason || "", placeholder: "reason (required)",
                               oninput: () => state.on.selectionChanged() });
  const reasonLabel = el("label", { for: `${id}-reason`, hidden: !was.clear }, `Reason to clear these ${g.count}`);
  const retry = el("input", { type: "checkbox", class: "retry-group", id: `${id}-retry`, disabled: !canChange,
                              "aria-describedby": described, checked: Boolean(was.retry) });
  const clear = el("input", { type: "checkbox", class: "clear-group", id: `${id}-clear`, disabled: !canChange,
                              "aria-describedby": described, checked: Boolean(was.clear) });
  retry.addEventListener("change", () => { if (retry.checked) clear.checked = false; toggle(); });
  clear.addEventListener("change", () => { if (clear.checked) retry.checked = false; toggle(); if (clear.checked) reason.focus(); });
  function toggle() {
    reason.hidden = reasonLabel.hidden = !clear.checked;
    state.on.selectionChanged();
  }
  return [
    el("span", { class: "choice" }, retry, el("label", { for: `${id}-retry` }, `Retry all ${g.count}`)),
    el("span", { class: "choice" }, clear, el("label", { for: `${id}-clear` }, `Clear all ${g.count}`)),
    reasonLabel, reason,
  ];
}

// The groups ticked: what Save Changes sends for them, and how many payments they stand for.
export function groupSelection() {
  const retryGroups = [], clearGroups = [];
  let payments = 0, missingReason = false;
  for (const [groupId, { group, node }] of state.groups) {
    if (node.querySelector("input.retry-group:checked")) { retryGroups.push(groupId); payments += group.count; }
    if (node.querySelector("input.clear-group:checked")) {
      const reason = node.querySelector("input.group-reason").value.trim();
      if (!reason) missingReason = true;
      clearGroups.push({ group_id: groupId, reason });
      payments += group.count;
    }
  }
  return { retryGroups, clearGroups, payments, missingReason };
}
