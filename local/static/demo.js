// The demo page: starts generate_report jobs with the browser client and shows each one.
// No build step: this file and /client/streamer.js are served as they are.

import { StreamerClient, newRequestId } from "/client/streamer.js";

const JOBS_KEY = "streamer-demo:jobs";
const TOKEN_KEY = "streamer-demo:token";
const MAX_KEPT_JOBS = 50;

const $ = (selector) => document.querySelector(selector);
const ui = {
  connection: $("#connection"),
  url: $("#url"),
  token: $("#token"),
  tokenSource: $("#token-source"),
  connectForm: $("#connect-form"),
  jobForm: $("#job-form"),
  start: $("#start"),
  formError: $("#form-error"),
  jobs: $("#jobs"),
  noJobs: $("#no-jobs"),
  clear: $("#clear"),
  template: $("#job-template"),
};

let client = null;
const cards = new Map(); // request id -> {job, el, status}

// --- what survives a reload: the jobs' request ids (and payloads) in localStorage ----

function storedJobs() {
  try {
    const jobs = JSON.parse(localStorage.getItem(JOBS_KEY) || "[]");
    return Array.isArray(jobs) ? jobs.filter((job) => job && typeof job.id === "string") : [];
  } catch {
    return [];
  }
}

function saveJobs(jobs) {
  localStorage.setItem(JOBS_KEY, JSON.stringify(jobs.slice(-MAX_KEPT_JOBS)));
}

function updateStoredJob(id, change) {
  saveJobs(storedJobs().map((job) => (job.id === id ? { ...job, ...change } : job)));
}

function forgetJob(id) {
  saveJobs(storedJobs().filter((job) => job.id !== id));
}

// --- connection -----------------------------------------------------------------------

function showConnection(state, info = {}) {
  const text = {
    idle: "not connected",
    connecting: "connecting…",
    connected: "connected",
    disconnected: "connection lost: reconnecting…",
    suspended: "connection lost for a while: retrying every 30 s or so…",
    closed: "disconnected",
    failed: `disconnected: ${info.code ?? info.error?.code ?? "failed"}`,
  }[state];
  ui.connection.textContent = text;
  ui.connection.dataset.state = state;
  ui.start.disabled = !["connected", "disconnected", "suspended"].includes(state);
}

async function connect() {
  const token = ui.token.value.trim();
  const url = ui.url.value.trim();
  if (client) client.close();
  client = null;
  if (!token) {
    showConnection("idle");
    showFormError("Paste a token to connect.");
    return;
  }
  const current = new StreamerClient(url, token, {
    onStateChange: (state, info) => {
      if (client === current || client === null) showConnection(state, info);
    },
  });
  client = current;
  try {
    await current.connect();
  } catch (error) {
    showConnection("failed", { error });
    showFormError(error.code === "CONNECTION_FAILED" ? `Could not connect (a wrong URL, or a refused token). ${error.reason}` : describe(error));
    return;
  }
  hideFormError();
  for (const job of storedJobs()) follow(job);
}

// --- jobs -----------------------------------------------------------------------------

function readPayload() {
  const payload = {};
  for (const [name, input] of [["pages", "#pages"], ["page_ms", "#page-ms"], ["fail_at_page", "#fail-at-page"]]) {
    const raw = $(input).value.trim();
    if (raw === "") continue;
    const number = Number(raw);
    // Anything that is not a number goes as typed: the server says what is wrong with it.
    payload[name] = Number.isFinite(number) ? number : raw;
  }
  return payload;
}

async function startJob(event) {
  event.preventDefault();
  hideFormError();
  if (!client) return;
  const payload = readPayload();
  const job = { id: newRequestId("demo"), payload, createdAt: Date.now(), acknowledged: false };
  // Kept before it is sent: a reload before the acknowledgment still finds it.
  saveJobs([...storedJobs(), job]);
  run(job, client.call("generate_report", payload, {
    id: job.id,
    onAcknowledged: () => {
      updateStoredJob(job.id, { acknowledged: true });
      card(job);
      render(job.id, { status: "QUEUED", message: "queued" });
    },
    onProgress: (progress) => showProgress(job.id, progress),
  }));
}

/** Follow a job kept from before (a reload, or a new connection) with `subscribe`. */
function follow(job) {
  const entry = card(job);
  if (["COMPLETED", "FAILED", "CANCELLED"].includes(entry.status)) return;
  if (entry.status === "NEW") render(job.id, { status: "RESUMING", message: "resuming…" });
  const subscribed = client.subscribe(job.id, { onProgress: (progress) => showProgress(job.id, progress) }).catch((error) => {
    // Never acknowledged before the reload: send it again with the same id (idempotent).
    if (error.code === "NOT_FOUND" && !job.acknowledged) {
      return client.call("generate_report", job.payload, { id: job.id, onProgress: (progress) => showProgress(job.id, progress) });
    }
    throw error;
  });
  run(job, subscribed);
}

function run(job, promise) {
  const runner = client;
  promise.then(
    (result) => render(job.id, { status: "COMPLETED", percentage: 100, message: "done", outcome: JSON.stringify(result, null, 2) }),
    (error) => {
      if (runner !== client) {
        // This page closed that connection (a new token); the new one follows the job.
      } else if (error.requestStatus) {
        // The request ran and ended FAILED or CANCELLED.
        render(job.id, { status: error.requestStatus, message: error.requestStatus === "CANCELLED" ? "cancelled" : "failed", outcome: describe(error), isError: true });
      } else if (["VALIDATION_ERROR", "INVALID_MESSAGE", "CONFLICT", "RATE_LIMITED", "PAYLOAD_TOO_LARGE"].includes(error.code) && !cards.has(job.id)) {
        // Refused before anything was stored: there is no job, only a form error.
        forgetJob(job.id);
        showFormError(describe(error));
      } else {
        render(job.id, { status: "ERROR", message: error.code, outcome: describe(error), isError: true });
      }
    },
  );
}

function card(job) {
  let entry = cards.get(job.id);
  if (entry) return entry;
  const el = ui.template.content.firstElementChild.cloneNode(true);
  el.dataset.requestId = job.id;
  const payload = job.payload || {};
  el.querySelector(".job-title").textContent = `generate_report · ${payload.pages ?? "?"} pages × ${payload.page_ms ?? 100} ms${payload.fail_at_page ? ` · fails at ${payload.fail_at_page}` : ""}`;
  el.querySelector(".request-id").textContent = job.id;
  el.querySelector(".cancel").addEventListener("click", () => cancelJob(job.id));
  el.querySelector(".remove").addEventListener("click", () => removeJob(job.id));
  // Newest first, by when the job was started (acknowledgments may come in any order).
  el.dataset.createdAt = String(job.createdAt ?? 0);
  const later = [...ui.jobs.children].find((other) => Number(other.dataset.createdAt) < (job.createdAt ?? 0));
  ui.jobs.insertBefore(el, later ?? null);
  ui.noJobs.hidden = true;
  entry = { job, el, status: "NEW" };
  cards.set(job.id, entry);
  return entry;
}

function showProgress(id, progress) {
  const entry = cards.get(id);
  if (!entry || ["COMPLETED", "FAILED", "CANCELLED"].includes(entry.status)) return;
  render(id, { status: "RUNNING", percentage: progress.percentage, message: progress.message });
}

function render(id, { status, percentage, message, outcome, isError = false }) {
  const entry = cards.get(id) ?? card(storedJobs().find((job) => job.id === id) ?? { id, payload: {} });
  const { el } = entry;
  if (status) {
    entry.status = status;
    el.dataset.status = status;
    el.querySelector(".badge").textContent = status;
  }
  if (percentage !== undefined) {
    const value = Math.max(0, Math.min(100, Number(percentage) || 0));
    el.querySelector(".fill").style.width = `${value}%`;
    el.querySelector(".bar").setAttribute("aria-valuenow", String(Math.round(value)));
    el.querySelector(".percent").textContent = `${Math.round(value)} %`;
  }
  if (message !== undefined) el.querySelector(".message").textContent = message;
  if (outcome !== undefined) {
    const pre = el.querySelector(".outcome");
    pre.textContent = outcome;
    pre.hidden = false;
    pre.classList.toggle("error", isError);
  }
  const ended = ["COMPLETED", "FAILED", "CANCELLED", "ERROR"].includes(entry.status);
  el.querySelector(".cancel").hidden = ended;
  el.querySelector(".remove").hidden = !ended;
}

async function cancelJob(id) {
  const entry = cards.get(id);
  if (!client || !entry) return;
  const button = entry.el.querySelector(".cancel");
  button.disabled = true;
  button.textContent = "Cancelling…";
  try {
    const outcome = await client.cancel(id);
    if (outcome.status === "CANCELLED") {
      render(id, { status: "CANCELLED", message: "cancelled", outcome: outcome.error ? describe(outcome.error) : "cancelled", isError: true });
    }
  } catch (error) {
    render(id, { outcome: `cancel failed: ${describe(error)}`, isError: true });
  } finally {
    button.disabled = false;
    button.textContent = "Cancel";
  }
}

function removeJob(id) {
  const entry = cards.get(id);
  entry?.el.remove();
  cards.delete(id);
  forgetJob(id);
  ui.noJobs.hidden = cards.size > 0;
}

function clearFinished() {
  for (const [id, entry] of [...cards]) {
    if (["COMPLETED", "FAILED", "CANCELLED", "ERROR"].includes(entry.status)) removeJob(id);
  }
}

// --- errors -----------------------------------------------------------------------------

function describe(error) {
  const lines = [`${error.code}: ${error.reason ?? error.message}`];
  const fields = error.details?.fields;
  if (fields && typeof fields === "object") {
    for (const [name, problem] of Object.entries(fields)) lines.push(`  ${name}: ${problem}`);
  } else if (error.details && Object.keys(error.details).length) {
    lines.push(`  ${JSON.stringify(error.details)}`);
  }
  if (error.retryable) lines.push("  (retryable)");
  return lines.join("\n");
}

function showFormError(text) {
  ui.formError.textContent = text;
  ui.formError.hidden = false;
}

function hideFormError() {
  ui.formError.hidden = true;
  ui.formError.textContent = "";
}

// --- start --------------------------------------------------------------------------------

async function devToken() {
  try {
    const response = await fetch("/dev-token", { cache: "no-store" });
    if (!response.ok) return null;
    return (await response.json()).token || null;
  } catch {
    return null;
  }
}

async function main() {
  ui.connectForm.addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, ui.token.value.trim());
    connect();
  });
  ui.jobForm.addEventListener("submit", startJob);
  ui.clear.addEventListener("click", clearFinished);
  if (!ui.url.value || ui.url.value.includes("%%")) ui.url.value = `ws://${location.hostname}:8080/`;

  const pasted = sessionStorage.getItem(TOKEN_KEY);
  if (pasted) {
    ui.token.value = pasted;
    ui.tokenSource.textContent = "(kept for this tab)";
  } else {
    const token = await devToken();
    if (token) {
      ui.token.value = token;
      ui.tokenSource.textContent = "(the stack's dev token: dev-user in dev-tenant)";
    }
  }
  for (const job of storedJobs()) card(job);
  if (ui.token.value.trim()) await connect();
  else showConnection("idle");
  document.body.dataset.ready = "true";
}

main();
