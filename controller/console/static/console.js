// The threadbox web console. Plain DOM code with no build step and no network
// access beyond this server. Every string from users or kernels goes in as text
// nodes (see h()); kernel HTML is only ever shown inside a script-less sandboxed iframe.
"use strict";

const $ = (selector) => document.querySelector(selector);

const state = {
  threads: [],
  current: null, // the open thread record
  transcripts: new Map(), // thread id -> element, so switching threads keeps the history
  busy: new Set(), // thread ids with a turn in flight
};

const PLACEHOLDERS = {
  code: "import pandas as pd\ndf = pd.read_csv(\"data.csv\")\ndf.describe()",
  message: "Write a message. With no language model configured, ```python fenced blocks run as code.",
};

// Builds an element; children that are strings become text nodes, never markup.
function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  el.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

function threadPath(id, ...rest) {
  return ["/threads", id, ...rest].map((part, i) => (i === 0 ? part : encodeURIComponent(part))).join("/");
}

function filePath(threadId, name) {
  return threadPath(threadId, "files") + "/" + name.split("/").map(encodeURIComponent).join("/");
}

// The API puts a plain sentence in `detail`; validation errors may carry a list.
function detailOf(text, status) {
  try {
    const detail = JSON.parse(text).detail;
    if (typeof detail === "string") return detail;
    if (detail !== undefined) return JSON.stringify(detail);
  } catch {
    // not JSON: a proxy error page or an empty body
  }
  return status ? `The server answered ${status}.` : "The server could not be reached.";
}

// ---- token -------------------------------------------------------------
// The API token is kept in sessionStorage only: it goes when the tab closes. A link
// ending in #token=... hands it over once; a fragment never reaches the server, and
// it is taken out of the address bar and history straight away.

const TOKEN_KEY = "threadbox-token";

function takeTokenFromLink() {
  const match = location.hash.match(/^#token=(.+)$/);
  if (!match) return false;
  sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
  history.replaceState(null, "", location.pathname + location.search);
  return true;
}

function withToken(headers = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { ...headers, Authorization: `Bearer ${token}` } : headers;
}

// Forget the token and everything it showed, then ask for one.
function askForToken(message = "") {
  sessionStorage.removeItem(TOKEN_KEY);
  state.threads = [];
  state.transcripts.clear();
  showThread(null);
  $("#layout").hidden = true;
  $("#sign-out").hidden = true;
  $("#login").hidden = false;
  $("#login-error").textContent = message;
  $("#login-error").hidden = !message;
  $("#token-input").focus();
}

function signIn(event) {
  event.preventDefault();
  const token = $("#token-input").value.trim();
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  $("#token-input").value = "";
  start();
}

function start() {
  if (!sessionStorage.getItem(TOKEN_KEY)) return askForToken();
  $("#login").hidden = true;
  $("#layout").hidden = false;
  $("#sign-out").hidden = false;
  loadThreads().then(route);
}

async function api(path, options = {}) {
  let resp;
  try {
    resp = await fetch(path, { ...options, headers: withToken(options.headers) });
  } catch (err) {
    throw new Error(`Cannot reach the threadbox server: ${err.message}`);
  }
  const detail = resp.ok ? "" : detailOf(await resp.text(), `${resp.status} ${resp.statusText}`);
  if (resp.status === 401) askForToken(detail);
  if (!resp.ok) throw new Error(detail);
  return resp;
}

// A plain link cannot carry the token, so downloads are fetched and handed over as a blob.
async function download(path, name) {
  try {
    const url = URL.createObjectURL(await (await api(path)).blob());
    const link = h("a", { href: url, download: name, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  } catch (err) {
    toast(`Could not download ${name}: ${err.message}`);
  }
}

function fileLink(threadId, name, props = {}) {
  const path = filePath(threadId, name);
  const base = name.split("/").pop();
  const onclick = (event) => { event.preventDefault(); download(path, base); };
  return h("a", { href: path, download: base, onclick, ...props }, name);
}

function toast(message, kind = "error") {
  const box = $("#toast");
  $("#toast-text").textContent = message;
  box.className = `toast ${kind}`;
  box.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.hidden = true; }, 8000);
}

function ago(seconds) {
  const diff = Date.now() / 1000 - seconds;
  if (diff < 60) return "just now";
  if (diff < 3600) return `${Math.floor(diff / 60)} min ago`;
  if (diff < 86400) return `${Math.floor(diff / 3600)} h ago`;
  return new Date(seconds * 1000).toLocaleDateString();
}

function bytes(n) {
  const units = ["B", "KB", "MB", "GB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

// ---- health -------------------------------------------------------------

async function checkHealth() {
  const el = $("#health");
  try {
    const ready = await (await api("/readyz")).json();
    el.textContent = `ready · ${ready.backend} kernels · ${ready.agent} agent`;
    el.className = "health ok";
  } catch (err) {
    el.textContent = err.message;
    el.className = "health bad";
  }
}

// ---- threads ------------------------------------------------------------

// Every page of GET /threads: each answer's Link header names the next one.
async function allThreads() {
  const threads = [];
  for (let path = "/threads"; path; ) {
    const resp = await api(path);
    threads.push(...(await resp.json()));
    path = /<([^>]+)>;\s*rel="next"/.exec(resp.headers.get("Link") || "")?.[1];
  }
  return threads;
}

async function loadThreads() {
  try {
    state.threads = await allThreads();
  } catch (err) {
    toast(`Could not list threads: ${err.message}`);
    return;
  }
  renderThreads();
}

function renderThreads() {
  const current = state.threads.find((t) => t.id === state.current?.id);
  if (current) showLive(current.live);
  const items = [...state.threads].reverse().map((t) => h("li", {},
    h("a", { href: `#/t/${encodeURIComponent(t.id)}`, class: t.id === state.current?.id ? "active" : "", "data-id": t.id },
      h("span", { class: t.live ? "dot live" : "dot", title: t.live ? "kernel running" : "kernel stopped" }),
      h("span", { class: "name" }, t.name),
      h("time", { title: new Date(t.created * 1000).toLocaleString() }, ago(t.created)))));
  $("#thread-list").replaceChildren(...items);
  $("#no-threads").hidden = items.length > 0;
}

async function createThread(event) {
  event.preventDefault();
  const input = $("#new-thread-name");
  const name = input.value.trim();
  if (!name) return;
  try {
    const resp = await api("/threads", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ name }),
    });
    const record = await resp.json();
    input.value = "";
    await loadThreads();
    location.hash = `#/t/${encodeURIComponent(record.id)}`;
  } catch (err) {
    toast(`Could not create the thread: ${err.message}`);
  }
}

async function route() {
  const match = location.hash.match(/^#\/t\/(.+)$/);
  if (!match) return showThread(null);
  const id = decodeURIComponent(match[1]);
  try {
    showThread(await (await api(threadPath(id))).json());
  } catch (err) {
    showThread(null);
    toast(err.message);
  }
}

function transcriptFor(id) {
  if (!state.transcripts.has(id)) {
    state.transcripts.set(id, h("div", { class: "turns" }, h("p", { class: "transcript-empty" },
      "Nothing run yet in this page. Outputs appear here as they stream in.")));
  }
  return state.transcripts.get(id);
}

function showLive(live) {
  const pill = $("#thread-live");
  pill.textContent = live ? "kernel running" : "kernel stopped";
  pill.className = live ? "pill live" : "pill";
}

function showThread(record) {
  state.current = record;
  $("#welcome").hidden = Boolean(record);
  $("#thread").hidden = !record;
  $("#files-panel").hidden = !record;
  renderThreads();
  if (!record) return;
  $("#thread-name").textContent = record.name;
  $("#thread-id").textContent = record.id;
  showLive(record.live);
  $("#transcript").replaceChildren(transcriptFor(record.id));
  updateSendButton();
  loadFiles();
  $("#input").focus();
}

// ---- turns --------------------------------------------------------------

function mode() {
  return document.querySelector("input[name=mode]:checked").value;
}

function onModeChange() {
  const code = mode() === "code";
  $("#input").placeholder = PLACEHOLDERS[mode()];
  $("#timeout-field").hidden = !code;
  updateSendButton();
}

function updateSendButton() {
  const button = $("#send");
  const busy = state.current && state.busy.has(state.current.id);
  button.disabled = Boolean(busy);
  button.textContent = busy ? "Running…" : mode() === "code" ? "Run" : "Send";
}

// Keep the newest output in view, unless the user has scrolled up to read.
function followOutput(change) {
  const box = $("#transcript");
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  change();
  if (atBottom) box.scrollTop = box.scrollHeight;
}

class Turn {
  constructor(threadId, kind, text) {
    this.threadId = threadId;
    this.outputs = h("div", { class: "outputs" });
    this.foot = h("div", { class: "turn-foot is-running" }, "running…");
    this.finished = false;
    this.el = h("article", { class: "turn" },
      h("div", { class: `turn-input ${kind}` }, h("span", { class: "badge" }, kind), h("pre", {}, text)),
      this.outputs, this.foot);
    this.started = performance.now();
  }

  add(node) {
    followOutput(() => this.outputs.append(node));
  }

  // Consecutive chunks of one stream belong in one block, as in a terminal.
  appendStream(kind, text) {
    const last = this.outputs.lastElementChild;
    if (last && last.matches(`pre.stream.${kind}`)) followOutput(() => last.append(text));
    else this.add(h("pre", { class: `stream ${kind}` }, text));
  }

  finish(status, text) {
    this.finished = true;
    followOutput(() => {
      this.foot.className = `turn-foot is-${status}`;
      this.foot.textContent = text;
    });
  }

  fail(message) {
    this.add(h("div", { class: "error" }, h("strong", {}, message)));
    this.finish("error", "failed");
  }
}

function attachTurn(turn) {
  const turns = transcriptFor(turn.threadId);
  turns.querySelector(".transcript-empty")?.remove();
  turns.append(turn.el);
}

async function send(event) {
  event.preventDefault();
  const input = $("#input");
  const text = input.value;
  const thread = state.current;
  if (!thread || !text.trim() || state.busy.has(thread.id)) return;
  const kind = mode();
  const turn = new Turn(thread.id, kind, text);
  attachTurn(turn);
  $("#transcript").scrollTop = $("#transcript").scrollHeight;
  input.value = "";
  state.busy.add(thread.id);
  updateSendButton();
  try {
    const resp = await api(threadPath(thread.id, kind === "code" ? "execute" : "messages"), {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/x-ndjson" },
      body: JSON.stringify(requestBody(kind, text)),
    });
    for await (const ev of ndjson(resp.body)) render(turn, ev);
    if (!turn.finished) turn.fail("The stream ended before the turn finished; the connection may have dropped.");
  } catch (err) {
    turn.fail(err.message);
  } finally {
    state.busy.delete(thread.id);
    updateSendButton();
    loadThreads();
  }
}

function requestBody(kind, text) {
  if (kind !== "code") return { text };
  const timeout = Number($("#timeout").value);
  return timeout > 0 ? { code: text, timeout } : { code: text };
}

async function* ndjson(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let newline;
    while ((newline = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, newline).trim();
      buffer = buffer.slice(newline + 1);
      if (line) yield JSON.parse(line);
    }
  }
  if (buffer.trim()) yield JSON.parse(buffer);
}

const RENDERERS = {
  keepalive: () => {}, // only holds the stream open through a silent cell
  status: (turn, ev) => turn.add(h("div", { class: "status" },
    h("span", { class: "phase" }, ev.phase),
    h("span", {}, ev.message + (ev.queue_position ? ` (position ${ev.queue_position} in the queue)` : "")))),
  code: (turn, ev) => turn.add(h("pre", { class: "code" }, ev.code)),
  stdout: (turn, ev) => turn.appendStream("stdout", ev.text),
  stderr: (turn, ev) => turn.appendStream("stderr", ev.text),
  display: (turn, ev) => turn.add(renderDisplay(ev)),
  error: (turn, ev) => turn.add(renderError(ev)),
  files: (turn, ev) => {
    turn.add(renderFilesChanged(turn.threadId, ev));
    if (state.current?.id === turn.threadId) loadFiles();
  },
  message: (turn, ev) => turn.add(h("div", { class: "message" }, ev.text)),
  done: (turn, ev) => {
    const count = ev.execution_count ? ` · [${ev.execution_count}]` : "";
    turn.finish(ev.status, `${ev.status} · ${ev.seconds.toFixed(2)} s${count}`);
  },
};

function render(turn, ev) {
  const renderer = RENDERERS[ev.type];
  if (renderer) renderer(turn, ev);
  else turn.add(h("pre", { class: "stream stdout" }, JSON.stringify(ev)));
}

const BASE64 = /^[A-Za-z0-9+/=\s]+$/;

// Richest safe representation first, as Jupyter front-ends do.
function renderDisplay(ev) {
  const data = ev.data || {};
  const prompt = ev.is_result ? h("span", { class: "prompt" }, `Out[${ev.execution_count ?? " "}]:`) : null;
  return h("div", { class: ev.is_result ? "display result" : "display" }, prompt, displayBody(data));
}

function displayBody(data) {
  for (const type of ["image/png", "image/jpeg", "image/gif"]) {
    const b64 = data[type];
    if (typeof b64 === "string" && BASE64.test(b64)) {
      return h("img", { src: `data:${type};base64,${b64.replace(/\s/g, "")}`, alt: data["text/plain"] || "image output" });
    }
  }
  if (typeof data["image/svg+xml"] === "string") {
    // An SVG loaded through <img> cannot run scripts.
    return h("img", { src: "data:image/svg+xml;charset=utf-8," + encodeURIComponent(data["image/svg+xml"]), alt: "SVG output" });
  }
  if (typeof data["text/html"] === "string") return htmlFrame(data["text/html"]);
  if (typeof data["text/plain"] === "string") return h("pre", {}, data["text/plain"]);
  return h("pre", { class: "muted" }, `[output of type ${Object.keys(data).join(", ") || "unknown"}]`);
}

const FRAME_MARGIN = 8;
const FRAME_STYLE = `body{margin:${FRAME_MARGIN}px;font:13px system-ui,sans-serif;color:#1d2330}` +
  "table{border-collapse:collapse;border:none}th,td{padding:3px 10px;border:none;border-bottom:1px solid #e3e6eb;text-align:right}" +
  "thead th{border-bottom:1px solid #9aa1ad}tbody tr:nth-child(odd){background:#f7f8fa}";

// No allow-scripts: the HTML can't run code, so allow-same-origin only lets us
// measure its height to fit the frame.
function htmlFrame(html) {
  const frame = h("iframe", { class: "html-output", sandbox: "allow-same-origin", title: "HTML output", referrerpolicy: "no-referrer" });
  frame.srcdoc = `<!doctype html><meta charset="utf-8"><style>${FRAME_STYLE}</style>${html}`;
  frame.addEventListener("load", () => {
    const doc = frame.contentDocument;
    // The body, not the document: the document is never shorter than the frame's viewport.
    const height = doc ? Math.ceil(doc.body.getBoundingClientRect().height) + 2 * FRAME_MARGIN + 2 : 0;
    if (height) frame.style.height = `${Math.min(height, 600)}px`;
  });
  return frame;
}

const ANSI = /\u001b\[[0-9;]*[A-Za-z]/g;
const ERROR_LEADS = {
  timeout: "Timed out",
  kernel_died: "The kernel died",
  sandbox_failed: "The sandbox failed",
  quota: "Over quota",
  rejected: "Rejected",
  llm_failed: "The language model could not answer",
};

function renderError(ev) {
  const lead = ERROR_LEADS[ev.kind];
  const title = `${lead ? lead + ": " : ""}${ev.ename}${ev.evalue ? ": " + ev.evalue : ""}`;
  const trace = (ev.traceback || []).join("\n").replace(ANSI, "");
  return h("div", { class: "error" }, h("strong", {}, title), trace ? h("pre", {}, trace) : null);
}

function renderFilesChanged(threadId, ev) {
  const links = ev.changed.map((name) => fileLink(threadId, name, { title: "Download" }));
  const deleted = ev.deleted.map((name) => h("span", { class: "muted" }, `${name} (deleted)`));
  const refused = Object.entries(ev.refused).map(([name, why]) => h("span", { class: "refused" }, `${name} not saved: ${why}`));
  return h("div", { class: "files-changed" }, h("span", { class: "muted" }, "Files:"), links, deleted, refused);
}

// ---- files --------------------------------------------------------------

async function loadFiles() {
  const thread = state.current;
  if (!thread) return;
  let files;
  try {
    files = await (await api(threadPath(thread.id, "files"))).json();
  } catch (err) {
    toast(`Could not list files: ${err.message}`);
    return;
  }
  if (state.current?.id !== thread.id) return;
  const items = files.map((f) => h("li", {},
    fileLink(thread.id, f.name, { title: `Download ${f.name}` }),
    h("span", { class: "size" }, bytes(f.size)),
    h("time", { title: new Date(f.modified * 1000).toLocaleString() }, ago(f.modified))));
  $("#file-list").replaceChildren(...items);
  $("#no-files").hidden = items.length > 0;
}

// XMLHttpRequest rather than fetch: only it reports upload progress.
function upload(threadId, file) {
  const bar = h("progress", { max: 100, value: 0 });
  const status = h("span", { class: "upload-status" }, "0%");
  const row = h("div", { class: "upload" }, h("span", { class: "name", title: file.name }, file.name), status, bar);
  $("#uploads").append(row);
  const fail = (message) => {
    row.className = "upload failed";
    bar.remove();
    status.textContent = message;
    status.before(h("button", { type: "button", class: "icon", title: "Dismiss", onclick: () => row.remove() }, "×"));
  };
  const form = new FormData();
  form.append("file", file, file.name);
  const xhr = new XMLHttpRequest();
  xhr.open("POST", threadPath(threadId, "files"));
  for (const [key, value] of Object.entries(withToken())) xhr.setRequestHeader(key, value);
  xhr.upload.addEventListener("progress", (e) => {
    if (!e.lengthComputable) return;
    bar.value = Math.round((100 * e.loaded) / e.total);
    status.textContent = `${bar.value}%`;
  });
  xhr.addEventListener("load", () => {
    if (xhr.status === 401) askForToken(detailOf(xhr.responseText, xhr.status));
    if (xhr.status >= 300) return fail(`Upload failed: ${detailOf(xhr.responseText, xhr.status)}`);
    row.className = "upload done";
    bar.value = 100;
    status.textContent = "uploaded";
    setTimeout(() => row.remove(), 2500);
    if (state.current?.id === threadId) loadFiles();
  });
  xhr.addEventListener("error", () => fail("Upload failed: the server could not be reached."));
  xhr.send(form);
}

function uploadAll(files) {
  if (!state.current) return;
  for (const file of files) upload(state.current.id, file);
}

function wireDropzone() {
  const zone = $("#dropzone");
  const input = $("#file-input");
  input.addEventListener("change", () => { uploadAll(input.files); input.value = ""; });
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    uploadAll(e.dataTransfer.files);
  });
}

// ---- composer keys ------------------------------------------------------

function onComposerKey(e) {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
    e.preventDefault();
    $("#composer").requestSubmit();
  } else if (e.key === "Tab" && !e.shiftKey && mode() === "code") {
    e.preventDefault();
    e.target.setRangeText("    ", e.target.selectionStart, e.target.selectionEnd, "end");
  }
}

function main() {
  $("#new-thread").addEventListener("submit", createThread);
  $("#refresh-threads").addEventListener("click", loadThreads);
  $("#refresh-files").addEventListener("click", loadFiles);
  $("#composer").addEventListener("submit", send);
  $("#input").addEventListener("keydown", onComposerKey);
  $("#toast-close").addEventListener("click", () => { $("#toast").hidden = true; });
  for (const radio of document.querySelectorAll("input[name=mode]")) radio.addEventListener("change", onModeChange);
  $("#login-form").addEventListener("submit", signIn);
  $("#sign-out").addEventListener("click", () => askForToken());
  window.addEventListener("hashchange", () => (takeTokenFromLink() ? start() : route()));
  wireDropzone();
  onModeChange();
  checkHealth();
  takeTokenFromLink();
  start();
}

main();
