// The first screen of a key with several practices: every practice in scope with its failures,
// its system's hold and its open alerts, most failures first, each opening that practice.
"use strict";

import { $, api, el, plural, say, when } from "./lib.js";

const PAGE = 50;
const pages = { cursors: [null], page: 0 };
let opening = () => {};

export function onOpen(open) { opening = open; }

export async function showOverview(resetPaging = true) {
  if (resetPaging) { pages.cursors = [null]; pages.page = 0; }
  $("practice-view").hidden = true;
  $("practices-overview").hidden = false;
  const query = new URLSearchParams({ limit: String(PAGE) });
  const cursor = pages.cursors[pages.page];
  if (cursor) query.set("cursor", cursor);
  try {
    const page = await api(`/overview?${query}`);
    $("overview-table").querySelector("tbody").replaceChildren(...page.items.map(rowFor));
    pages.cursors[pages.page + 1] = page.next_cursor;
    $("overview-older").disabled = !page.next_cursor;
    $("overview-newer").disabled = pages.page === 0;
    const needing = page.items.filter((p) => p.failed.count > 0).length;
    const from = pages.page * PAGE + 1;
    $("overview-count").textContent = `${plural(page.total, "practice")} in your scope`
      + (page.total > PAGE ? `, ${from} to ${from + page.items.length - 1} shown` : "")
      + (needing ? `; ${plural(needing, "practice")} on this page with FAILED payments, most first.`
        : "; none with FAILED payments on this page.");
  } catch (error) { say(error.message, true); }
}

function systemText(p) {
  if (p.hold === "held") return "HELD: its payments wait";
  if (p.hold === "failing") return "Not answering";
  return p.name === null ? "Not set up" : "Answering";
}

function rowFor(p) {
  const label = p.name && p.name !== p.practice_id ? `${p.name} (${p.practice_id})` : p.practice_id;
  const open = el("button", { type: "button", class: "link", onclick: () => opening(p.practice_id, label) }, label);
  return el("tr", { "data-practice-id": p.practice_id, class: p.failed.count ? "needs" : "" },
    el("th", { scope: "row" }, open),
    el("td", { class: "num failed" }, String(p.failed.count)),
    el("td", { class: "num" }, p.failed.count ? p.failed.amount : ""),
    el("td", {}, p.failed.oldest_failed_at ? when(p.failed.oldest_failed_at) : ""),
    el("td", { class: p.hold ? "held" : "" }, systemText(p)),
    el("td", { class: "num" }, String(p.open_alerts)));
}

$("overview-older").addEventListener("click", () => { pages.page += 1; showOverview(false); });
$("overview-newer").addEventListener("click", () => { pages.page = Math.max(0, pages.page - 1); showOverview(false); });
