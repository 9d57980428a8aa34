// Finding the patient (contract section 14): a search of the practice's own system, beside "Enter
// mapping". Choosing a patient enters the mapping; paypost then retries that account's failures.
// Nothing of the search is kept in the page once it is closed (no storage, no URL).
"use strict";

import { api, el, plural, say, sayError, state } from "./lib.js";

export const searchOffered = () => state.searchOffered !== false;

// Enter a mapping: what the id form and a chosen patient both do.
export async function saveMapping(account, ehrPatientId) {
  const result = await api(`/practices/${encodeURIComponent(state.practice)}/patient-accounts/${encodeURIComponent(account)}/mapping`,
    { method: "PUT", body: JSON.stringify({ ehr_patient_id: ehrPatientId }) });
  say(`Mapping saved for ${account}: ${plural(result.retried, "failed payment")} sent back by themselves.`);
  return result;
}

let made = 0;
// A search form for ``account``; ``done`` runs once a chosen patient's mapping is saved.
export function searchFor(account, done = () => {}) {
  const id = `find-${++made}`;
  const input = el("input", { id: `${id}-q`, type: "search", required: true, maxlength: "200", autocomplete: "off",
                               placeholder: "name, date of birth…" });
  const results = el("ul", { class: "matches", "aria-live": "polite", "aria-label": `Patients found for ${account}` });
  const form = el("form", { class: "find", role: "search", "aria-label": `Find the patient of ${account}` },
    el("label", { for: `${id}-q` }, `Find the patient of ${account} in the practice's system`), " ", input, " ",
    el("button", { type: "submit" }, "Search"));
  const box = el("div", { class: "patient-search" }, form, results);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const q = input.value.trim();
    if (!q) return;
    results.replaceChildren(el("li", { class: "muted" }, "Searching…"));
    try {
      const { items } = await api(`/practices/${encodeURIComponent(state.practice)}/patient-search?${new URLSearchParams({ q, limit: "10" })}`);
      results.replaceChildren(...(items.length ? items.map((p) => matchFor(p, account, done, box))
        : [el("li", { class: "muted" }, "Nobody found: try fewer words, or a date of birth.")]));
    } catch (error) {
      if (error.status === 501) {
        state.searchOffered = false;
        results.replaceChildren(el("li", {}, "This practice's system offers no patient search: enter the id from it."));
      } else {
        results.replaceChildren(el("li", { class: "error" }, error.message));
      }
    }
  });
  return box;
}

function matchFor(patient, account, done, box) {
  const choose = el("button", { type: "button", "aria-label": `Choose ${patient.display || patient.patient_id} (${patient.patient_id}) for ${account}` },
    "Choose");
  choose.addEventListener("click", async () => {
    choose.disabled = true;
    try {
      await saveMapping(account, patient.patient_id);
      box.querySelector("ul").replaceChildren();
      box.querySelector("input").value = "";
      done(patient.patient_id);
    } catch (error) { sayError(error); choose.disabled = false; }
  });
  return el("li", { class: "match" }, el("span", { class: "display" }, patient.display || "(no name given)"), " ",
    el("span", { class: "patient-id" }, patient.patient_id), " ", choose);
}
