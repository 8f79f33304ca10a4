// The campaign page: compose and preview a campaign, confirm and launch it, follow it in the history.
// Plain DOM, no framework and no build step. All data is shown with textContent, never as HTML.

const POLL_ACTIVE_MS = 2500;
const POLL_IDLE_MS = 15000;
const PREVIEW_DEBOUNCE_MS = 700;
const ACTIVE_RUN_STATES = new Set(["queued", "running"]);
const MAX_BAR_WIDTH = 24;

const state = {
  session: null,
  segments: [],
  programs: [],
  csv: null,            // the stored upload: {csv_path, filename, ids, ...}
  uploadSeq: 0,         // the latest upload started; an older one finishing late is ignored
  uploading: false,
  preview: null,        // the last preview shown
  previewKey: null,     // the form it was computed for
  previewSeq: 0,
  confirming: null,     // what the open confirmation shows: {preview, form}
  history: { offset: 0, limit: 25, program: "", data: null },
  launchedRunId: null,
  detailId: null,
  timer: null,
};

const $ = (id) => document.getElementById(id);
const fmt = new Intl.NumberFormat();
const num = (n) => fmt.format(Number(n || 0));

// ---------------------------------------------------------------- helpers

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

async function api(path, options = {}) {
  const response = await fetch(`api/${path}`, { credentials: "same-origin", ...options });
  if (response.status === 401) {
    showBanner("Your Airflow session has ended: sign in again, then reload this page.");
  }
  const body = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
  if (!response.ok) {
    throw new Error(describeError(body) || `${response.status} ${response.statusText}`);
  }
  return body;
}

function describeError(body) {
  if (!body || body.detail === undefined) return null;
  if (typeof body.detail === "string") return body.detail;
  if (Array.isArray(body.detail)) {
    return body.detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("\n");
  }
  return JSON.stringify(body.detail);
}

function postJson(path, payload) {
  return api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(payload) });
}

function showBanner(text, kind = "", link = null) {
  const banner = $("banner");
  banner.className = `banner ${kind}`;
  banner.replaceChildren(text, link ? " " : "", link || "");
  banner.hidden = false;
}

function when(value) {
  if (!value) return "";
  const date = new Date(value);
  return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

function airflowLink(url, label, className = "") {
  const link = el("a", { href: url, target: "_top", class: className, text: label });
  link.addEventListener("click", (event) => {
    if (openInAirflow(url)) event.preventDefault();
  });
  return link;
}

// Inside Airflow's frame, move Airflow itself to the page (its router listens to popstate);
// the frame's sandbox does not allow navigating the top window directly.
function openInAirflow(url) {
  try {
    const top = window.top;
    if (top === window || top.location.origin !== window.location.origin) return false;
    const idx = (top.history.state && top.history.state.idx) || 0;
    top.history.pushState({ usr: null, key: Math.random().toString(36).slice(2, 10), idx: idx + 1 }, "", url);
    top.dispatchEvent(new PopStateEvent("popstate", { state: top.history.state }));
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------- theme

function parentDocument() {
  try {
    return window.parent !== window ? window.parent.document : null;
  } catch {
    return null;
  }
}

function syncTheme() {
  const root = document.documentElement;
  const parent = parentDocument();
  let dark;
  if (parent) {
    const styles = parent.defaultView.getComputedStyle(parent.documentElement);
    for (const name of styles) {
      if (name.startsWith("--chakra-")) root.style.setProperty(name, styles.getPropertyValue(name));
    }
    dark = parent.documentElement.classList.contains("dark");
  } else {
    const chosen = localStorage.getItem("theme") || "system";
    dark = chosen === "dark" || (chosen === "system" && matchMedia("(prefers-color-scheme: dark)").matches);
  }
  root.classList.toggle("dark", dark);
  root.classList.toggle("light", !dark);
  root.style.colorScheme = dark ? "dark" : "light";
}

function watchTheme() {
  syncTheme();
  const parent = parentDocument();
  if (parent) {
    new MutationObserver(syncTheme).observe(parent.documentElement, { attributes: true, attributeFilter: ["class"] });
  }
}

// ---------------------------------------------------------------- tabs and routing

function showTab(name) {
  for (const tab of ["new", "history"]) {
    $(`tab-${tab}`).setAttribute("aria-selected", String(tab === name));
    $(`panel-${tab}`).hidden = tab !== name;
  }
}

function route() {
  const hash = location.hash.replace(/^#/, "");
  if (hash.startsWith("campaign/")) {
    showTab("history");
    openDetail(hash.slice("campaign/".length));
  } else if (hash === "history") {
    showTab("history");
    closeDetail();
    loadHistory();
  } else {
    showTab("new");
    closeDetail();
  }
  schedulePoll(0);
}

// ---------------------------------------------------------------- form

function audience() {
  return document.querySelector('input[name="audience"]:checked').value;
}

// The segment's parameters as entered, and what is wrong with them. An empty box means the segment's
// default; a box that is not empty never does: a number box the browser cannot read has an empty value
// (validity.badInput), and parseInt read "1e3" as 1 and "2.5" as 2, so such entries are refused instead.
function readSegmentParams() {
  const params = {};
  const problems = [];
  for (const input of $("segment-params").querySelectorAll("input")) {
    const raw = input.value.trim();
    const problem = raw || input.validity?.badInput ? paramProblem(input.dataset.type, raw) : null;
    if (problem) problems.push({ input, text: `${input.name}: ${problem}` });
    else if (raw) params[input.name] = paramValue(input.dataset.type, raw);
  }
  return { params, problems };
}

function markSegmentParams() {
  const bad = new Set(readSegmentParams().problems.map((p) => p.input));
  for (const input of $("segment-params").querySelectorAll("input")) {
    input.setAttribute("aria-invalid", String(bad.has(input)));
  }
}

function paramProblem(type, raw) {
  if (type !== "int" && type !== "float") return null;
  const value = Number(raw);
  if (!raw || !Number.isFinite(value)) return raw ? `“${raw}” is not a number` : "not a number";
  if (type === "int" && !Number.isSafeInteger(value)) return `${raw} is not a whole number`;
  return null;
}

function paramValue(type, raw) {
  if (type === "int" || type === "float") return Number(raw);
  if (type === "list") return raw.split(",").map((v) => v.trim()).filter(Boolean);
  return raw;
}

function segmentParams() {
  return readSegmentParams().params;
}

function formPayload() {
  const payload = {
    program_id: $("program").value,
    name: $("name").value,
    message: $("message").value,
    audience: audience(),
  };
  if (payload.audience === "segment") {
    payload.segment = $("segment").value;
    payload.segment_params = segmentParams();
  }
  if (payload.audience === "csv") payload.csv_path = state.csv ? state.csv.csv_path : null;
  return payload;
}

function previewPayload() {
  const { name, ...rest } = formPayload();  // the name does not change who receives what
  return rest;
}

const PARAMS_PROBLEM = "Check the segment settings";

function readyToCount() {
  const payload = formPayload();
  if (!payload.program_id) return "Choose a program.";
  if (!payload.message.trim()) return "Write the message to see who receives it and what they read.";
  if (payload.audience === "csv" && state.uploading) return "Uploading the CSV…";
  if (payload.audience === "csv" && !payload.csv_path) return "Upload a CSV of member ids.";
  if (payload.audience === "segment") {
    const { problems } = readSegmentParams();
    if (problems.length) return `${PARAMS_PROBLEM}: ${problems.map((p) => p.text).join("; ")}.`;
  }
  return null;
}

// Whether the count shown was computed for exactly the form as it is now: Send and "Yes, send" need it.
function countIsCurrent() {
  return Boolean(state.preview) && !state.uploading && !readyToCount()
    && state.previewKey === JSON.stringify(previewPayload());
}

function renderSegmentControls() {
  const segment = state.segments.find((s) => s.name === $("segment").value);
  $("segment-description").textContent = segment ? segment.description : "";
  $("segment-params").replaceChildren(...(segment ? segment.params : []).map((param) => {
    const type = param.type === "int" || param.type === "float" ? "number" : "text";
    const shown = Array.isArray(param.default) ? param.default.join(", ") : String(param.default);
    return el("label", {},
      el("span", { class: "hint", text: `${param.description || param.name} (${param.name})` }),
      el("input", { type, name: param.name, "data-type": param.type, placeholder: shown,
        step: param.type === "float" ? "any" : "1", oninput: formChanged }));
  }));
}

function renderAudienceBoxes() {
  $("segment-box").hidden = audience() !== "segment";
  $("csv-box").hidden = audience() !== "csv";
}

function renderMessageLength() {
  const limit = state.session ? state.session.max_message_length : 160;
  const length = $("message").value.length;
  const counter = $("message-length");
  counter.textContent = `${length} characters before personalisation (limit ${limit} after)`;
  counter.classList.toggle("error-text", length > limit);
}

let previewTimer = null;

function formChanged() {
  renderAudienceBoxes();
  renderMessageLength();
  markSegmentParams();
  updateSendButton();
  clearTimeout(previewTimer);
  const problem = readyToCount();
  if (problem) {
    showPreviewHint(problem);
    if (problem.startsWith(PARAMS_PROBLEM)) showFormError(problem);  // by the box, not only in the preview
  } else if (state.previewKey !== JSON.stringify(previewPayload()) || !state.preview) {
    previewTimer = setTimeout(() => runPreview(false), PREVIEW_DEBOUNCE_MS);
  }
}

function updateSendButton() {
  const fresh = countIsCurrent();
  const canLaunch = state.session && state.session.can_launch;
  const named = $("name").value.trim().length > 0;
  $("send-button").disabled = !(fresh && canLaunch && named && state.preview.eligible > 0);
  $("send-button").title = !canLaunch ? "You may not trigger push_campaign in Airflow"
    : !named ? "Give the campaign a name" : state.uploading ? "Wait for the upload to finish"
    : !fresh ? "Count the audience first" : "";
}

function insertPlaceholder(text) {
  const box = $("message");
  const start = box.selectionStart ?? box.value.length;
  box.setRangeText(text, start, box.selectionEnd ?? start, "end");
  box.focus();
  formChanged();
}

async function uploadCsv() {
  const file = $("csv-file").files[0];
  const seq = ++state.uploadSeq;
  state.csv = null;
  state.uploading = Boolean(file);
  formChanged();  // at once: Send and the count shown were the previous file's
  if (!file) return;
  $("csv-status").textContent = `Checking ${file.name}…`;
  const body = new FormData();
  body.append("file", file);
  try {
    const stored = await api("uploads", { method: "POST", body });
    if (seq !== state.uploadSeq) return;  // another file was picked meanwhile
    state.csv = stored;
    const repeated = state.csv.duplicates ? `, ${num(state.csv.duplicates)} repeated` : "";
    $("csv-status").textContent = `${state.csv.filename}: ${num(state.csv.ids)} member ids${repeated}. Stored for the campaign's record.`;
    hideFormError();
  } catch (error) {
    if (seq !== state.uploadSeq) return;
    $("csv-status").textContent = "Not uploaded.";
    showFormError(error.message);
  } finally {
    if (seq === state.uploadSeq) state.uploading = false;
  }
  formChanged();
}

function showFormError(text) {
  $("form-error").textContent = text;
  $("form-error").hidden = false;
}

function hideFormError() {
  $("form-error").hidden = true;
}

// ---------------------------------------------------------------- preview

function showPreviewHint(text) {
  $("preview-empty").textContent = text;
  $("preview-empty").hidden = false;
  $("preview").hidden = true;
  $("preview-loading").hidden = true;
  state.preview = null;
  updateSendButton();
}

async function runPreview(explicit) {
  const problem = readyToCount();
  if (problem) {
    if (explicit) showFormError(problem);
    return showPreviewHint(problem);
  }
  const payload = previewPayload();
  const key = JSON.stringify(payload);
  const seq = ++state.previewSeq;
  $("preview-loading").hidden = false;
  // The form changed meanwhile: this count is not for it (a newer one is coming, or a hint is shown).
  const stale = () => seq !== state.previewSeq || key !== JSON.stringify(previewPayload()) || readyToCount();
  try {
    const preview = await postJson("preview", payload);
    if (stale()) return;
    state.preview = preview;
    state.previewKey = key;
    hideFormError();
    renderPreview(preview);
  } catch (error) {
    if (stale()) return;
    showFormError(error.message);
    showPreviewHint("The audience could not be counted; see the message under the form.");
  } finally {
    if (seq === state.previewSeq) $("preview-loading").hidden = true;
  }
  updateSendButton();
}

function renderPreview(preview) {
  $("preview-empty").hidden = true;
  $("preview").hidden = false;
  $("preview-eligible").textContent = num(preview.eligible);
  $("preview-iphone").textContent = num(preview.will_buzz_iphone);
  $("preview-google").textContent = num(preview.will_update_google);
  $("preview-targeted").textContent = num(preview.targeted);
  $("preview-batches").textContent = num(preview.batches);
  $("preview-duplicates").textContent = preview.duplicates_in_input
    ? ` · ${num(preview.duplicates_in_input)} repeated ids in the file` : "";
  renderCounts($("preview-skipped"), Object.entries(preview.skipped || {}), "Nobody is skipped.");
  $("preview-samples").replaceChildren(...(preview.samples || []).map((sample) =>
    el("li", {}, el("span", { class: "who", text: `${sample.member_id} · ${walletName(sample.wallet)}` }),
      sample.message)));
  if (!(preview.samples || []).length) {
    $("preview-samples").append(el("li", { class: "muted", text: "Nobody would receive this message." }));
  }
}

// "CSV upload: /very/long/path/file.csv" -> "CSV upload: file.csv" (the full path is in the tooltip).
function audienceLabel(text) {
  return (text || "").replace(/^(CSV upload: ).*\//, "$1");
}

function walletName(wallet) {
  return wallet === "google" ? "Google Wallet" : "Apple Wallet";
}

const REASONS = {
  unknown_member: "not a member of this program",
  inactive_pass: "pass not active",
  opted_out: "opted out",
  no_passkit_id: "pass not issued through PassKit",
  duplicate_pass: "same pass listed twice",
  frequency_cap: "buzzed recently (frequency cap)",
  google_daily_limit: "Google's 3 updates a day used up",
  already_showing: "pass already shows this text",
  dry_run: "dry run",
  not_confirmed: "not confirmed",
  campaign_stopped: "campaign stopped",
  in_doubt_unverified: "outcome unknown",
  retries_exhausted: "retries exhausted",
};

function reasonName(reason) {
  return REASONS[reason] ? `${REASONS[reason]} (${reason})` : reason || "no reason recorded";
}

function renderCounts(table, entries, emptyText) {
  const body = table.tBodies[0];
  body.replaceChildren(...entries.map(([reason, count]) =>
    el("tr", {}, el("td", { text: reasonName(reason) }), el("td", { text: num(count) }))));
  if (!entries.length) body.append(el("tr", {}, el("td", { class: "muted empty", colspan: "2", text: emptyText })));
}

// ---------------------------------------------------------------- confirm and launch

function confirmationText(preview) {
  const iphones = preview.will_buzz_iphone;
  const google = preview.will_update_google;
  return `This will buzz ${num(iphones)} phones (${num(iphones)} iPhones; ${num(google)} Google passes update silently). Are you sure?`;
}

// Who receives it, as the count was computed: a segment with every setting (defaults named), or the file.
function audienceSummary(payload) {
  if (payload.audience === "csv") return `Audience: ${state.csv.filename} (${num(state.csv.ids)} member ids).`;
  if (payload.audience !== "segment") return "Audience: all active members.";
  const segment = state.segments.find((s) => s.name === payload.segment);
  const settings = (segment ? segment.params : []).map((param) => {
    const value = payload.segment_params[param.name];
    const shown = (v) => (Array.isArray(v) ? v.join(", ") : typeof v === "number" ? num(v) : String(v));
    return value === undefined ? `${param.name} ${shown(param.default)} (default)` : `${param.name} ${shown(value)}`;
  });
  return `Audience: segment ${payload.segment}${settings.length ? `, ${settings.join(", ")}` : ""}.`;
}

function askToConfirm(event) {
  event.preventDefault();
  if ($("send-button").disabled || !countIsCurrent()) return;
  const preview = state.preview;
  const payload = formPayload();
  state.confirming = { preview, form: JSON.stringify(payload) };
  $("confirm-text").textContent = confirmationText(preview);
  $("confirm-audience").textContent = audienceSummary(payload);
  $("confirm-detail").textContent =
    `${num(preview.eligible)} passes will be updated in total. ` +
    `If the audience has grown past ${num(preview.eligible)} by the time the run starts, nothing is sent.`;
  $("confirm-dialog").returnValue = "";
  $("confirm-dialog").showModal();
}

// The count confirmed must be the one shown, for the form as it is now: anything changed while the dialog
// was open (another file, another segment setting) needs a new count and a new confirmation.
async function confirmed() {
  const shown = state.confirming;
  state.confirming = null;
  if ($("confirm-dialog").returnValue !== "confirm" || !shown) return;
  const form = formPayload();
  if (!countIsCurrent() || state.preview !== shown.preview || JSON.stringify(form) !== shown.form) {
    showFormError("The form changed after the count you confirmed: nothing was sent. Check the new count and send again.");
    updateSendButton();
    return;
  }
  const payload = { ...form, confirm_recipients: shown.preview.eligible };
  $("send-button").disabled = true;
  try {
    const run = await postJson("launch", payload);
    state.launchedRunId = run.run_id;
    showBanner(`Campaign “${payload.name}” launched as run ${run.run_id}.`, "success",
      airflowLink(run.run_url, "Open the DAG run in Airflow"));
    resetForm();
    location.hash = "history";
  } catch (error) {
    showFormError(error.message);
    updateSendButton();
  }
}

function resetForm() {
  $("name").value = "";
  state.preview = null;
  state.previewKey = null;
  showPreviewHint("Launched. Compose the next campaign here.");
}

// ---------------------------------------------------------------- history

const STATUS_CLASS = {
  COMPLETED: "success", COMPLETED_WITH_ERRORS: "warning", FAILED: "failed", CANCELLED: "failed",
  DRY_RUN: "info", PROCESSING: "running", PENDING: "",
};

function statusBadge(status, runState) {
  let label = (status || "").replaceAll("_", " ").toLowerCase();
  let kind = STATUS_CLASS[status] ?? "";
  if (status === "QUEUED") kind = "";
  if (runState === "running" && status === "PENDING") {
    label = "starting";
    kind = "running";
  }
  return el("span", { class: `badge ${kind}`, text: label, title: runState ? `DAG run: ${runState}` : null });
}

async function loadHistory() {
  const { offset, limit, program } = state.history;
  const query = new URLSearchParams({ offset, limit });
  if (program) query.set("program_id", program);
  try {
    state.history.data = await api(`campaigns?${query}`);
    renderHistory();
    $("history-refresh").textContent = `Updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    $("history-refresh").textContent = `Could not refresh: ${error.message}`;
  }
}

function renderHistory() {
  const data = state.history.data;
  const rows = [...data.queued_runs.map(queuedRow), ...data.campaigns.map(campaignRow)];
  $("history").tBodies[0].replaceChildren(...rows);
  $("history-empty").hidden = rows.length > 0;
  const { offset, limit } = state.history;
  $("history-prev").disabled = offset === 0;
  $("history-next").disabled = data.total === null || offset + limit >= data.total;
  $("history-page").textContent = data.total
    ? `${num(offset + 1)}–${num(Math.min(offset + limit, data.total))} of ${num(data.total)}` : "";
}

function cells(row, extra = {}) {
  return [
    el("td", { class: "wrap" }, el("strong", { text: row.name || "(no name)" }),
      row.dry_run ? el("span", { class: "muted small", text: " · dry run" }) : null),
    el("td", { class: "wrap", text: row.program_name || row.program_id || "" }),
    el("td", { class: "wrap", text: audienceLabel(row.audience), title: row.audience }),
    el("td", {}, statusBadge(row.status, row.run_state)),
    el("td", { class: "num", text: num(row.targeted) }),
    el("td", { class: "num", text: num(row.sent) }),
    el("td", { class: "num", text: num(row.failed) }),
    el("td", { class: "num", text: num(row.skipped) }),
    el("td", { text: when(row.created_at), title: row.created_at }),
    el("td", { text: extra.finished ?? when(row.finished_at), title: row.finished_at }),
  ];
}

function campaignRow(row) {
  const fresh = state.launchedRunId && row.dag_run_id === state.launchedRunId;
  return el("tr", { class: fresh ? "fresh" : "", "data-campaign": row.id, "data-run": row.dag_run_id,
    onclick: () => { location.hash = `campaign/${row.id}`; } },
    cells(row, { finished: row.final ? null : `${num(row.pending)} to send` }));
}

function queuedRow(run) {
  const row = { ...run, status: "QUEUED", targeted: 0, sent: 0, failed: 0, skipped: 0 };
  const fresh = state.launchedRunId === run.run_id;
  return el("tr", { class: fresh ? "fresh" : "", "data-run": run.run_id, title: "Waiting for Airflow to start the run",
    onclick: () => openInAirflow(run.run_url) || (location.href = run.run_url) },
    cells(row, { finished: `run ${run.run_state}` }));
}

function historyActive() {
  const data = state.history.data;
  if (!data) return false;
  return data.queued_runs.length > 0 || data.campaigns.some((c) => !c.final || ACTIVE_RUN_STATES.has(c.run_state));
}

// ---------------------------------------------------------------- detail

function closeDetail() {
  state.detailId = null;
  $("detail-view").hidden = true;
  $("history-view").hidden = false;
}

async function openDetail(id) {
  if (state.detailId !== id) $("detail-view").dataset.loaded = "";
  state.detailId = id;
  $("history-view").hidden = true;
  $("detail-view").hidden = false;
  try {
    const detail = await api(`campaigns/${encodeURIComponent(id)}`);
    if (state.detailId !== id) return;
    state.detail = detail;
    renderDetail(detail);
  } catch (error) {
    $("detail-name").textContent = "Campaign not available";
    $("detail-meta").textContent = error.message;
  }
}

function renderDetail(detail) {
  const c = detail.campaign;
  $("detail-name").textContent = c.name;
  $("detail-meta").title = c.target_query || "";
  $("detail-meta").textContent = [c.program_name, audienceLabel(c.target_query), `created ${when(c.created_at)}`,
    c.finished_at ? `finished ${when(c.finished_at)}` : null].filter(Boolean).join(" · ");
  $("detail-status").replaceWith(Object.assign(statusBadge(c.status, detail.run && detail.run.state), { id: "detail-status" }));
  $("detail-message").textContent = c.message_text;
  const runLink = $("detail-run");
  runLink.hidden = !detail.run;
  if (detail.run) {
    runLink.href = detail.run.url;
    runLink.textContent = `Open the DAG run${detail.run.state ? ` (${detail.run.state})` : ""}`;
    runLink.onclick = (event) => { if (openInAirflow(detail.run.url)) event.preventDefault(); };
  }
  $("detail-abort").hidden = !c.abort_reason;
  $("detail-abort").textContent = c.abort_reason || "";
  renderDetailStats(detail);
  renderChart(detail.sends);
  const failures = detail.failures.map((f) => [f.status === "FAILED" ? f.reason : `${f.reason} · ${f.status.toLowerCase()}`, f.count]);
  renderCounts($("detail-failures"), failures, "No failures.");
  renderCounts($("detail-skipped"), detail.skipped.map((s) => [s.reason, s.count]), "Nobody was skipped.");
  renderDetailPreview(detail.preview);
  renderLift(detail.lift);
}

function renderDetailStats(detail) {
  const counts = detail.counts;
  const pending = (counts.PENDING || 0) + (counts.SENDING || 0) + (counts.RETRYABLE || 0);
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  const toSend = total - (counts.SKIPPED || 0) - (counts.HELD_OUT || 0);
  const stats = [
    ["Targeted", total], ["Sent", counts.SENT || 0], ["Failed", counts.FAILED || 0],
    ["Skipped", counts.SKIPPED || 0], ["Cancelled", counts.CANCELLED || 0], ["To send", pending],
  ];
  if (counts.HELD_OUT) stats.splice(4, 0, ["Held out", counts.HELD_OUT]);
  $("detail-stats").replaceChildren(...stats.map(([label, value]) =>
    el("div", { class: "stat" }, el("span", { class: "value", text: num(value) }), el("span", { class: "muted", text: label }))));
  const running = !detail.final && toSend > 0;
  $("detail-progress").hidden = !running;
  if (running) {
    const done = toSend - pending;
    $("detail-progress").firstElementChild.style.width = `${Math.round((100 * done) / toSend)}%`;
  }
}

function renderChart(sends) {
  const box = $("chart");
  const points = sends.points || [];
  $("chart-unit").textContent = points.length ? `per ${sends.bucket} · peak ${num(sends.peak)}` : "";
  if (!points.length) {
    box.replaceChildren(el("p", { class: "muted", text: "Nothing sent yet." }));
    return;
  }
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  const width = 600;
  const height = 180;
  const left = 36;
  const bottom = 20;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `Sends per ${sends.bucket}`);
  const peak = Math.max(1, sends.peak);
  const step = (width - left) / points.length;
  const add = (tag, attrs, text) => {
    const node = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    svg.append(node);
    return node;
  };
  points.forEach((point, i) => {
    const h = ((height - bottom - 8) * point.sent) / peak;
    const bar = add("rect", { class: "bar", x: left + i * step + step * 0.1, y: height - bottom - h,
      width: Math.min(Math.max(step * 0.8, 0.5), MAX_BAR_WIDTH), height: h });
    const title = document.createElementNS(ns, "title");
    title.textContent = `${new Date(point.t).toLocaleTimeString()}: ${num(point.sent)} sent`;
    bar.append(title);
  });
  add("line", { class: "axis", x1: left, y1: height - bottom, x2: width, y2: height - bottom });
  add("text", { x: left - 4, y: 12, "text-anchor": "end" }, num(sends.peak));
  add("text", { x: left - 4, y: height - bottom, "text-anchor": "end" }, "0");
  add("text", { x: left, y: height - 4 }, new Date(points[0].t).toLocaleTimeString());
  add("text", { x: width, y: height - 4, "text-anchor": "end" }, new Date(points.at(-1).t).toLocaleTimeString());
  box.replaceChildren(svg);
}

function renderDetailPreview(preview) {
  const box = $("detail-preview");
  if (!preview) {
    box.replaceChildren(el("p", { class: "muted", text: "The audience has not been resolved yet." }));
    return;
  }
  box.replaceChildren(
    el("p", { text: confirmationText(preview).replace(" Are you sure?", "") }),
    el("p", { class: "muted", text: `${num(preview.eligible)} of ${num(preview.targeted)} targeted, in ${num(preview.batches)} batches.` }),
    preview.samples ? el("ul", { class: "samples" }, preview.samples.map((s) =>
      el("li", {}, el("span", { class: "who", text: `${s.member_id} · ${walletName(s.wallet)}` }), s.message)))
      : el("p", { class: "muted small", text: "What members read is shown to users who may launch campaigns." }));
}

// One column per lift row (one per window), one line per figure: it fits a card at laptop width.
function renderLift(lift) {
  const box = $("detail-lift");
  if (!lift.available) {
    box.replaceChildren(el("p", { class: "muted", text: `No lift report: ${lift.note}.` }));
    return;
  }
  if (!lift.rows.length) {
    box.replaceChildren(el("p", { class: "muted", text: "No lift figures for this campaign yet." }));
    return;
  }
  const figures = lift.columns.filter((c) => c !== "campaign_id" && c !== "window_days");
  const heading = (row, i) => (row.window_days !== undefined ? `${row.window_days}-day window` : `Report ${i + 1}`);
  box.replaceChildren(el("div", { class: "table-card" }, el("table", { class: "data lift" },
    el("thead", {}, el("tr", {}, el("th", { text: "" }), lift.rows.map((row, i) => el("th", { class: "num", text: heading(row, i) })))),
    el("tbody", {}, figures.map((name) => el("tr", {},
      el("td", { text: name.replaceAll("_", " ") }),
      lift.rows.map((row) => el("td", { class: "num", text: liftValue(row[name]) }))))))));
}

function liftValue(value) {
  if (value === null || value === undefined) return "–";
  if (typeof value === "number") {
    return Number.isInteger(value) ? num(value) : value.toLocaleString(undefined, { maximumSignificantDigits: 4 });
  }
  return /^\d{4}-\d{2}-\d{2}T/.test(value) ? when(value) : String(value);
}

function detailActive() {
  const detail = state.detail;
  return Boolean(detail && state.detailId && (!detail.final || (detail.run && ACTIVE_RUN_STATES.has(detail.run.state))));
}

// ---------------------------------------------------------------- polling

function schedulePoll(delay) {
  clearTimeout(state.timer);
  state.timer = setTimeout(poll, delay ?? (historyActive() || detailActive() ? POLL_ACTIVE_MS : POLL_IDLE_MS));
}

async function poll() {
  if (!document.hidden && !$("panel-history").hidden) {
    if (state.detailId) await openDetail(state.detailId);
    else await loadHistory();
  }
  schedulePoll();
}

// ---------------------------------------------------------------- start

async function loadReferenceData() {
  const [session, programs, segments] = await Promise.all([api("session"), api("programs"), api("segments")]);
  state.session = session;
  state.programs = programs;
  state.segments = segments;
  $("user").textContent = `Signed in as ${session.user}`;
  if (!session.can_launch) {
    showBanner("You can look at campaigns but not launch them: that needs permission to trigger push_campaign in Airflow.", "info");
  } else if (!session.dag.known) {
    showBanner("Airflow has not loaded the push_campaign DAG yet: campaigns cannot be launched until it has.");
  } else if (session.dag.paused) {
    showBanner("push_campaign is paused in Airflow: launched campaigns wait until it is unpaused.");
  }
  const options = programs.map((p) => el("option", { value: p.id, text: `${p.name} · ${num(p.active_members)} active passes` }));
  $("program").replaceChildren(...options);
  $("history-program").append(...programs.map((p) => el("option", { value: p.id, text: p.name })));
  $("segment").replaceChildren(...segments.map((s) => el("option", { value: s.name, text: s.name })));
  renderSegmentControls();
}

function bindEvents() {
  $("tab-new").addEventListener("click", () => { location.hash = "new"; });
  $("tab-history").addEventListener("click", () => { location.hash = "history"; });
  $("campaign-form").addEventListener("input", (event) => { if (event.target.type !== "file") formChanged(); });
  $("segment").addEventListener("change", () => { renderSegmentControls(); formChanged(); });
  $("csv-file").addEventListener("change", uploadCsv);
  $("count-button").addEventListener("click", () => runPreview(true));
  $("campaign-form").addEventListener("submit", askToConfirm);
  $("confirm-dialog").addEventListener("close", confirmed);
  for (const chip of document.querySelectorAll("[data-insert]")) {
    chip.addEventListener("click", () => insertPlaceholder(chip.dataset.insert));
  }
  $("detail-back").addEventListener("click", () => { location.hash = "history"; });
  $("history-program").addEventListener("change", (event) => {
    state.history.program = event.target.value;
    state.history.offset = 0;
    loadHistory();
  });
  $("history-prev").addEventListener("click", () => {
    state.history.offset = Math.max(0, state.history.offset - state.history.limit);
    loadHistory();
  });
  $("history-next").addEventListener("click", () => {
    state.history.offset += state.history.limit;
    loadHistory();
  });
  window.addEventListener("hashchange", route);
  document.addEventListener("visibilitychange", () => { if (!document.hidden) schedulePoll(0); });
}

async function start() {
  watchTheme();
  bindEvents();
  try {
    await loadReferenceData();
  } catch (error) {
    showBanner(`The campaign page could not load: ${error.message}`);
    return;
  }
  renderMessageLength();
  formChanged();
  route();
}

start();
