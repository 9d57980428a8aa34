// What every part of the console shares: the session's state, the API, and building elements.
"use strict";

export const $ = (id) => document.getElementById(id);

export const state = {
  token: sessionStorage.getItem("paypost.token") || "", role: "", name: "", practice: "", cursors: [null], page: 0,
  stream: null, rows: new Map(), reads: new Map(), groups: new Map(),
  // Set by console.js: what the other parts call back when something they changed shows elsewhere.
  on: { selectionChanged: () => {}, postingChanged: async () => {}, refresh: async () => {} },
};

export const MAPPING_ERRORS = new Set(["PATIENT_NOT_MAPPED", "PATIENT_NOT_FOUND"]);

export async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${state.token}`, ...(options.body ? { "Content-Type": "application/json" } : {}) };
  const response = await fetch(`/api/v1${path}`, { ...options, headers });
  const body = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) {
    const error = new Error(body?.error?.message || `${response.status} ${response.statusText}`);
    error.status = response.status;
    error.body = body;  // what else the answer says (a close's blockers)
    throw error;
  }
  return body;
}

export function say(text, isError = false) {
  const message = $("message");
  message.textContent = text;
  message.className = isError ? "error" : "";
}

export function sayError(error) {
  say(error.status === 403 ? "Your token can view but not change anything." : error.message, true);
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== null && value !== undefined && value !== false) node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children) node.append(child ?? "");
  return node;
}

// After a wait (a practice loading), move the focus to ``id`` unless the person moved it meanwhile:
// what they clicked or typed into while the page filled keeps the focus. ``since`` is what had it
// when the wait began.
export function focusUnlessMoved(since, id) {
  const now = document.activeElement;
  if (!now || now === document.body || now === since) $(id).focus();
}
export const mayChange = () => state.role === "operator" || state.role === "admin";
export const when = (iso) => (iso ? new Date(iso).toLocaleString() : "");
export const whenShort = (iso) => (iso ? new Date(iso).toLocaleString([], { dateStyle: "short", timeStyle: "medium" }) : "");
export const plural = (n, one, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;
export const postingPath = (paymentId) =>
  `/postings/${encodeURIComponent(state.practice)}/${encodeURIComponent(paymentId)}`;

// The chosen dates as the API's span: from the first day's start to the end of the last (UTC).
export function span() {
  const from = $("f-from").value, to = $("f-to").value;
  const out = {};
  if (from) out.received_from = `${from}T00:00:00Z`;
  if (to) {
    const end = new Date(`${to}T00:00:00Z`);
    end.setUTCDate(end.getUTCDate() + 1);
    out.received_to = end.toISOString();
  }
  return out;
}

// A file the API answers (a month's CSV), saved as the browser saves a download: the key goes in a
// header, never in a URL.
export async function download(path, name) {
  const response = await fetch(`/api/v1${path}`, { headers: { Authorization: `Bearer ${state.token}` } });
  if (!response.ok) {
    const body = await response.json().catch(() => null);
    throw new Error(body?.error?.message || `${response.status} ${response.statusText}`);
  }
  const url = URL.createObjectURL(await response.blob());
  const link = el("a", { href: url, download: name, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
