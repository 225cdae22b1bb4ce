// relaxd caregiver station. Plain JavaScript, no build step. Everything a user typed is shown
// with textContent (never as HTML); every change is a POST with the page's CSRF token.
"use strict";

const csrf = document.querySelector('meta[name="csrf-token"]').content;
const role = document.querySelector('meta[name="role"]').content;
const $ = (id) => document.getElementById(id);
const STATE_WORDS = {idle: "idle", running: "running", reduced: "reduced", halted: "halted",
  paused: "paused", fading: "ending gently", ended: "ended", estopped: "STOPPED",
  offline: "offline"};
const MOOD_MARK = {positive: "▲", neutral: "■", negative: "▼", no_face: "○"};
const MOOD_COLOUR = {positive: "#2a9d3a", neutral: "#8a8f98", negative: "#d62828", no_face: "#ffffff"};
let last = null;

async function api(method, path, body) {
  const options = {method, credentials: "same-origin", headers: {}};
  if (method !== "GET") {
    options.headers["Content-Type"] = "application/json";
    options.headers["X-CSRF-Token"] = csrf;
    options.body = JSON.stringify(body || {});
  }
  const response = await fetch(path, options);
  if (response.status === 401) showSignedOut();
  let data = {};
  try { data = await response.json(); } catch (e) { data = {}; }
  return {status: response.status, data};
}

// The sign-in ended (expired, signed out, the account removed): say so plainly, never as
// "the daemon is not answering"; STOP in the header still works on the chair's display.
function showSignedOut() {
  $("signed-out").classList.remove("hidden");
}

function say(text) { $("message").textContent = text; }

async function manual(steps) {
  const {status, data} = await api("POST", "/api/manual", {steps});
  say(status === 200 ? data.words : (data.error || ("failed: " + status)));
}

async function command(path, body, done) {
  const {status, data} = await api("POST", path, body);
  say(status === 200 ? (done || "") : (data.error || ("failed: " + status)));
}

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (cls) node.className = cls;
  return node;
}

function clock(seconds) {
  const s = Math.max(0, Math.round(seconds));
  return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
}

// --- Now ---------------------------------------------------------------------------------------

function render(s) {
  last = s;
  if (Number.isInteger(s.stop_seq)) stopPage.seq = s.stop_seq;
  $("state").textContent = STATE_WORDS[s.state] || s.state;
  $("state").dataset.state = s.state;
  $("scenario").textContent = s.scenario || "";
  $("child").textContent = s.child_name || (s.child ? childName(s.child) : "—");
  $("phase").textContent = s.phase ? "· " + s.phase : "";
  const levels = s.levels || {light: 0, audio: 0, vibration: 0};
  // Every output at 0 (stopped, halted, ended): show 0, no colour, no countdown, no breathing.
  const dark = ["light", "audio", "vibration"].every((k) => !levels[k]);
  $("phase-left").textContent = s.phase_left == null || dark ? "" : clock(s.phase_left) + " left";
  const intensity = dark ? 0 : (s.intensity || 0);
  $("intensity").textContent = dark ? "0" : intensity.toFixed(2);
  $("intensity-bar").value = intensity;
  for (const k of ["light", "audio", "vibration"]) {
    $("level-" + k).textContent = (levels[k] || 0).toFixed(2);
    $("bar-" + k).value = levels[k] || 0;
  }
  $("swatch").style.backgroundColor = dark ? "transparent" : (s.colour || "#000000");
  $("colour").textContent = dark ? "off" : (s.colour || "");
  const mood = (s.mood || {}).mood || "";
  $("mood").textContent = (MOOD_MARK[mood] || "") + " " + mood.replace("_", " ");
  $("confidence").textContent = s.mood ? Math.round(100 * s.mood.confidence) + " %" : "";
  drawStrip(s.mood_strip || []);
  renderBreath(s);
  renderBody(s.body);
  renderBanner(s);
  renderThermal(s.thermal);
  renderControls(s);
  renderAlerts(s.alerts || []);
  fillScenarios(s.scenarios || []);
  showPlaying();
}

// One banner for the chair's state: its colour (data-kind), what happened, the next step.
// The signed-out notice says what happened instead, never "the daemon is not answering".
function renderBanner(s) {
  const b = s.connected === false && !$("signed-out").classList.contains("hidden")
    ? {kind: "offline", title: "Not signed in: the numbers are not live.", next: "Sign in again."}
    : (s.banner || {kind: "offline", title: "…", next: ""});
  $("banner").dataset.kind = b.kind;
  $("banner-title").textContent = b.title;
  $("banner-next").textContent = b.next;
}

// The child's breathing beside the chair's tempo, the pulse as a trend with its quality
// (never an alarm), movement; "unknown" where the camera cannot tell.
const pulses = [];  // [time ms, beats a minute] over the last minute, for the trend

function renderBody(body) {
  $("breath-rates").textContent = body ? body.breathing : "";
  $("pulse-row").classList.toggle("hidden", !body || !body.pulse);
  $("movement-row").classList.toggle("hidden", !body || !body.movement);
  if (!body || !body.pulse) return;
  $("pulse").textContent = body.pulse;
  const now = Date.now(), bpm = parseFloat(body.pulse);
  if (!Number.isNaN(bpm)) pulses.push([now, bpm]);
  while (pulses.length && pulses[0][0] < now - 60000) pulses.shift();
  $("pulse-trend").textContent = Number.isNaN(bpm) ? "" : trend(pulses, now);
  $("movement").textContent = body.movement;
}

function trend(points, now) {
  const mean = (a) => a.reduce((x, p) => x + p[1], 0) / a.length;
  const recent = points.filter((p) => p[0] >= now - 15000), before = points.filter((p) => p[0] < now - 15000);
  if (!recent.length || !before.length) return "";
  const change = mean(recent) - mean(before);
  return change > 3 ? "· rising" : change < -3 ? "· falling" : "· steady";
}

// The breathing indicator: light, sound and vibration swell together on the scenario's tempo;
// the dot grows as they do, so a caregiver can breathe along. Animated here between updates
// from the breath's phase and rate at the time of the state.
let breath = null;

function renderBreath(s) {
  const dark = ["light", "audio", "vibration"].every((k) => !(s.levels || {})[k]);
  breath = s.breath && !dark ? {bpm: s.breath.bpm, phase: s.breath.phase, at: performance.now()} : null;
  $("breath-row").classList.toggle("hidden", !breath && !s.body);
  $("breath-dot").classList.toggle("hidden", !breath);
  if (!breath) $("breath-words").textContent = "";
  if (breath) requestAnimationFrame(animateBreath);
}

function animateBreath(now) {
  if (!breath) return;
  const phase = (breath.phase + (now - breath.at) / 1000 * breath.bpm / 60) % 1;
  const swell = 0.5 - 0.5 * Math.cos(2 * Math.PI * phase);
  $("breath-dot").style.transform = "scale(" + (0.5 + 0.5 * swell).toFixed(3) + ")";
  $("breath-words").textContent = (phase < 0.5 ? "breathe in" : "breathe out") + " ·";
  requestAnimationFrame(animateBreath);
}

// The chair's temperature: one line, only while it is warm or too hot (then every output is
// off and a Start is refused until it has cooled).
function renderThermal(thermal) {
  const line = $("thermal");
  const level = thermal ? thermal.level : "ok";
  line.classList.toggle("hidden", level !== "warm" && level !== "too hot");
  line.dataset.level = level;
  if (level !== "warm" && level !== "too hot") return;
  const degrees = thermal.temp_c == null ? "" : " (" + thermal.temp_c.toFixed(1) + " °C)";
  const flags = (thermal.throttled || []).length ? " The Pi reports: " + thermal.throttled.join(", ") + "." : "";
  line.textContent = (level === "too hot"
    ? "The chair is too hot" + degrees + ": every output is off. Start again once it has cooled."
    : "The chair is warm" + degrees + ": it stops by itself if it gets hotter.") + flags;
}

function renderControls(s) {
  const playing = ["running", "reduced", "halted", "paused", "fading"].includes(s.state);
  $("calmer").disabled = !["running", "reduced"].includes(s.state);
  $("end-gently").disabled = !playing || s.state === "fading";
  $("hold").setAttribute("aria-pressed", s.hold ? "true" : "false");
  $("hold").textContent = s.hold ? "Holding (release)" : "Hold";
  $("manual-row").classList.toggle("hidden", !s.manual);
  $("observe-row").classList.toggle("hidden", !!s.manual && playing);  // no camera: nothing read
  $("start").disabled = playing || s.estop_pressed || (s.estop && !s.station_stop);
  for (const id of ["start-child", "start-scenario", "start-manual"]) $(id).disabled = playing;
  for (const b of document.querySelectorAll(".observe")) b.disabled = !playing;
}

function drawStrip(strip) {
  const canvas = $("mood-strip"), ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  for (let i = 0; i < strip.length; i++) {
    const [ago, mood] = strip[i];
    const until = i + 1 < strip.length ? strip[i + 1][0] : 0;
    const x0 = w * (1 + ago / 300), x1 = w * (1 + until / 300);
    ctx.fillStyle = MOOD_COLOUR[mood] || "#ddd";
    const y = mood === "positive" ? 0 : mood === "neutral" ? h / 3 : mood === "negative" ? 2 * h / 3 : h - 3;
    ctx.fillRect(x0, y, Math.max(1, x1 - x0), mood === "no_face" ? 3 : h / 3);
  }
}

function option(value, text) {
  const o = el("option", text);
  o.value = value;
  return o;
}

function fillScenarios(names) {
  const select = $("start-scenario");
  if (select.dataset.names === names.join("\n")) return;
  select.dataset.names = names.join("\n");
  const chosen = select.value || "auto";
  select.replaceChildren(option("auto", "auto"), ...names.map((n) => option(n, n)));
  if (chosen === "auto" || names.includes(chosen)) select.value = chosen;
  showAuto();
}

// --- the child at Start ----------------------------------------------------------------------

let children = [];
const askedFor = new Set();  // unknown ids the list was reloaded for (once each)
const NO_PROFILE = "-";
const CONSENT_WORDS = {camera: "consent", manual: "consent: manual only"};

function childName(id) {
  if (!id) return "—";
  const child = children.find((c) => c.id === id);
  if (!child && !askedFor.has(id)) { askedFor.add(id); loadChildren(); }  // a new profile
  return child ? child.name : id;
}

async function loadChildren() {
  const {status, data} = await api("GET", "/api/children");
  if (status !== 200 || !Array.isArray(data)) return;
  children = data;
  const select = $("start-child"), chosen = select.value;
  select.replaceChildren(option("", "— child? —"),
    ...data.map((c) => option(c.id, c.name + " · " + (CONSENT_WORDS[c.consent] || "NO consent"))),
    option(NO_PROFILE, "no profile (chair's limits)"));
  const values = [...select.options].map((o) => o.value);
  select.value = values.includes(chosen) && chosen ? chosen : (data.length ? "" : NO_PROFILE);
  showAuto();
}

// The line under the form: what is playing now (never the next "auto" choice); while
// nothing plays, a summary of what Start will play and why, before it starts.
const PLAYING = ["running", "reduced", "halted", "paused", "fading"];
let summaryFor = null;

function showPlaying() {
  if (!last || !PLAYING.includes(last.state)) {
    if (summaryFor === "playing") { summaryFor = null; showAuto(); }
    return;
  }
  summaryFor = "playing";
  $("start-why").textContent = "Playing now: " + (last.scenario || "") + " for "
    + (last.child_name || (last.child ? last.child : "no profile"))
    + (last.why ? " — " + last.why : "") + (last.manual ? " (manual, camera off)" : "");
}

async function showAuto() {
  if (last && PLAYING.includes(last.state)) { showPlaying(); return; }
  const child = $("start-child").value, scenario = $("start-scenario").value, out = $("start-why");
  const key = child + "\n" + scenario + "\n" + $("start-manual").checked;
  summaryFor = key;
  const camera = $("start-manual").checked ? "manual, camera off" : "camera on";
  if (!child) { out.textContent = "Choose the child first."; return; }
  const who = child === NO_PROFILE ? "no profile, the chair's limits" : childLabel(child) + "'s limits";
  if (scenario !== "auto") {
    out.textContent = "Will play: " + scenario + " (" + who + "; " + camera + ").";
    return;
  }
  if (child === NO_PROFILE) { out.textContent = "auto chooses for a child: choose one, or a scenario."; return; }
  const {status, data} = await api("GET", "/api/children/" + encodeURIComponent(child) + "/auto");
  if (summaryFor !== key) return;  // changed meanwhile
  out.textContent = status === 200 ? "Will play: " + data.why + " (" + who + "; " + camera + ")."
    : (data.error || "");
}

function childLabel(id) {
  const child = children.find((c) => c.id === id);
  return child ? child.name : id;
}

async function start() {
  const child = $("start-child").value;
  if (!child) { say("Choose the child first."); return; }
  const body = {scenario: $("start-scenario").value, manual: $("start-manual").checked,
    child: child === NO_PROFILE ? null : child};
  // The newest stop this page has shown: a STOP from anywhere after it refuses this Start.
  if (last && Number.isInteger(last.stop_seq)) body.after_stop = last.stop_seq;
  const {status, data} = await api("POST", "/api/start", body);
  say(status === 200 ? "Started: " + data.scenario + (data.child ? " for " + childLabel(data.child) : "")
    : "Not started: " + (data.error || ("failed: " + status)));
}

// --- Alerts ------------------------------------------------------------------------------------

// The newest open alert on Now (in plain words naming the child) with its Acknowledge button;
// every alert on the Alerts tab, local time; "Acknowledge all" when more than one is open.
function renderAlerts(alerts) {
  const open = alerts.filter((a) => !a.acknowledged);
  $("alert-count").textContent = open.length ? String(open.length) : "";
  const newest = open[open.length - 1];
  $("alert-now").classList.toggle("hidden", !newest);
  if (newest) {
    $("alert-now-words").textContent = localTime(newest.at) + " — " + newest.words;
    $("alert-now-ack").dataset.id = newest.id;
  }
  for (const id of ["ack-all", "ack-all-list"]) {
    $(id).classList.toggle("hidden", open.length < 2);
    $(id).textContent = "Acknowledge all " + open.length;
  }
  const list = $("alerts");
  const key = JSON.stringify(alerts.map((a) => [a.id, a.acknowledged, a.words]));
  if (list.dataset.key === key) return;  // unchanged: keep the buttons under the finger
  list.dataset.key = key;
  list.replaceChildren(...alerts.slice().reverse().map(alertItem));
}

function alertItem(a) {
  const li = el("li", undefined, a.acknowledged ? "acknowledged" : "open");
  li.append(el("span", localTime(a.at) + " — " + a.words));
  if (!a.acknowledged) {
    const b = el("button", "Acknowledge", "ack");
    b.dataset.id = a.id;
    b.addEventListener("click", () => acknowledge(a.id));
    li.append(b);
  } else {
    li.append(el("span", "✓ acknowledged"));
  }
  return li;
}

function acknowledge(id) { command("/api/alerts/" + id + "/ack", {}, "Acknowledged."); }

function localTime(at) {
  return new Date(at * 1000).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
}

function localDate(iso) {
  const d = new Date(iso);
  return d.toLocaleDateString([], {day: "numeric", month: "short"}) + " "
    + d.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
}

// --- History -----------------------------------------------------------------------------------

let sessions = [];

async function loadSessions() {
  const {data} = await api("GET", "/api/sessions");
  sessions = Array.isArray(data) ? data : [];
  const chosen = $("sessions").dataset.chosen;
  $("sessions").replaceChildren(...sessions.map((s) => {
    const li = el("li");
    const b = el("button", undefined, "session");
    b.dataset.id = s.id;
    b.setAttribute("aria-pressed", String(String(s.id) === chosen));
    b.append(el("strong", localDate(s.started)), " " + (s.child_name || s.child || "no profile"),
      el("br"), s.scenario + " · " + clock(s.duration) + " · " + s.outcome);
    b.addEventListener("click", () => showSession(s.id));
    li.append(b);
    return li;
  }));
}

async function showSession(id) {
  $("sessions").dataset.chosen = String(id);
  for (const b of document.querySelectorAll("#sessions button")) {
    b.setAttribute("aria-pressed", String(b.dataset.id === String(id)));
  }
  const info = sessions.find((s) => s.id === id) || {};
  const {data} = await api("GET", "/api/sessions/" + id);
  $("session-title").textContent = "#" + id + " " + (info.started ? localDate(info.started) : "")
    + " · " + (info.child_name || info.child || "no profile") + " · " + (info.scenario || "")
    + (info.running ? " — still running: the plot shows it up to now (choose it again to update)" : "");
  const csv = $("csv");
  csv.href = "/api/sessions/" + id + ".csv";
  csv.classList.remove("hidden");
  plotSession($("plot"), data.events || []);
}

// Three bands over the session's time (minutes on the x axis): mood, the outputs' levels (0 to
// 1), and the body's readings (breaths and beats a minute, movement 0 to 1) when recorded.
function plotSession(canvas, events) {
  const ctx = canvas.getContext("2d"), w = canvas.width, h = canvas.height;
  const left = 62, right = w - 52, bottom = h - 20;
  const bands = {mood: [4, 66], levels: [74, 150], body: [158, bottom]};
  ctx.clearRect(0, 0, w, h);
  const end = Math.max(1, ...events.map((e) => e.t));
  const x = (t) => left + (right - left) * t / end;
  axes(ctx, bands, left, right, bottom, end);
  plotMood(ctx, events, x, end, bands.mood);
  const [lt, lb] = bands.levels;
  const colours = {light: "#e0a800", audio: "#1f77b4", vibration: "#2ca02c"};
  for (const key of Object.keys(colours)) {
    steps(ctx, events.filter((e) => e.type === "levels"), key, x, end,
      (v) => lb - (lb - lt) * v, colours[key], lb);
  }
  plotBody(ctx, events.filter((e) => e.type === "vitals"), x, bands.body);
  marks(ctx, events, x, bands);
}

function axes(ctx, bands, left, right, bottom, end) {
  ctx.strokeStyle = "#999";
  ctx.fillStyle = "#222";
  ctx.font = "12px system-ui, sans-serif";
  ctx.lineWidth = 1;
  for (const [top, low] of Object.values(bands)) ctx.strokeRect(left, top, right - left, low - top);
  const [mt] = bands.mood, [lt, lb] = bands.levels, [bt, bb] = bands.body;
  ["positive", "neutral", "negative", "no face"].forEach((m, i) => ctx.fillText(m, 2, mt + 12 + 16 * i));
  ctx.fillText("level 1", 2, lt + 10);
  ctx.fillText("level 0", 2, lb);
  ctx.fillText("40 / min", 2, bt + 10);
  ctx.fillText("0 / min", 2, bb);
  ctx.fillText("pulse", right + 4, bt + 10);  // the pulse's own scale, on the right
  ctx.fillText("120", right + 4, bt + 24);
  ctx.fillText("0", right + 4, bb);
  const step = niceStep(end);
  for (let t = 0; t <= end + 0.01; t += step) {
    const px = left + (right - left) * t / end;
    ctx.fillText(clock(t), px - 12, bottom + 14);
  }
  ctx.fillText("min:s", 2, bottom + 14);
}

function niceStep(end) {
  for (const s of [10, 30, 60, 120, 300, 600, 1200]) if (end / s <= 6) return s;
  return 1800;
}

function plotMood(ctx, events, x, end, [top]) {
  const moodY = {positive: top + 8, neutral: top + 24, negative: top + 40, no_face: top + 56};
  let prev = null;
  ctx.fillStyle = "#7b2cbf";
  for (const e of events.filter((e) => e.type === "mood")) {
    if (prev) ctx.fillRect(x(prev.t), moodY[prev.mood] - 3, x(e.t) - x(prev.t), 6);
    prev = e;
  }
  if (prev) ctx.fillRect(x(prev.t), moodY[prev.mood] - 3, x(end) - x(prev.t), 6);
}

function steps(ctx, points, key, x, end, y, colour, base) {
  ctx.strokeStyle = colour;
  ctx.lineWidth = 2;
  ctx.beginPath();
  let at = base;
  ctx.moveTo(x(0), at);
  for (const e of points) {
    ctx.lineTo(x(e.t), at);
    at = y(e[key] || 0);
    ctx.lineTo(x(e.t), at);
  }
  ctx.lineTo(x(end), at);
  ctx.stroke();
}

function plotBody(ctx, vitals, x, [top, bottom]) {
  const lines = [["breathing", "#7b2cbf", 40], ["pulse", "#d62828", 120], ["movement", "#777", 1]];
  for (const [key, colour, full] of lines) {
    ctx.strokeStyle = colour;
    ctx.lineWidth = 2;
    ctx.beginPath();
    let drawing = false;
    for (const e of vitals) {
      if (typeof e[key] !== "number") { drawing = false; continue; }  // unknown: a gap
      const py = bottom - (bottom - top) * Math.min(1, e[key] / full);
      if (drawing) ctx.lineTo(x(e.t), py); else ctx.moveTo(x(e.t), py);
      drawing = true;
    }
    ctx.stroke();
  }
  if (!vitals.length) {
    ctx.fillStyle = "#555";
    ctx.fillText("no body readings in this session", x(0) + 8, (top + bottom) / 2);
  }
}

function marks(ctx, events, x, bands) {
  for (const e of events) {
    if (e.type === "estop" && e.action === "press") {
      ctx.fillStyle = "#000";
      ctx.fillRect(x(e.t) - 1, bands.mood[0], 3, bands.body[1] - bands.mood[0]);
    } else if (e.type === "observation") {
      ctx.fillStyle = e.what === "upset" ? "#d62828" : e.what === "calm" ? "#2a9d3a" : "#555";
      ctx.beginPath();
      ctx.arc(x(e.t), bands.levels[0] + 6, 5, 0, 2 * Math.PI);
      ctx.fill();
    }
  }
}

// --- About -------------------------------------------------------------------------------------

async function loadAbout() {
  const {data} = await api("GET", "/api/about");
  const c = data.certificate;
  $("cert-fingerprint").textContent = c ? c.fingerprint
    : (data.error || "none: this station has no network listener (the chair's display only)");
  $("cert-names").textContent = c ? c.names.join(", ") : "";
  $("cert-expires").textContent = c ? new Date(c.expires).toLocaleDateString() : "";
}

// --- Scenarios (therapists) --------------------------------------------------------------------

async function preview(id) {
  const {status, data} = await api("GET", "/api/scenarios/" + encodeURIComponent(id));
  if (status !== 200) { $("timeline").textContent = data.error || "not found"; return; }
  $("timeline").textContent = data.timeline.join("\n");
  const canvas = $("preview"), ctx = canvas.getContext("2d");
  const total = data.phases.reduce((a, p) => a + p.duration, 0) || 1;
  let x = 0;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  for (const p of data.phases) {
    const width = canvas.width * p.duration / total;
    ctx.globalAlpha = 0.35 + 0.65 * p.brightness;
    ctx.fillStyle = p.colour;
    ctx.fillRect(x, 0, width - 2, canvas.height - 18);
    ctx.globalAlpha = 1;
    ctx.fillStyle = "#111";
    ctx.fillText(p.name + " " + clock(p.duration), x + 2, canvas.height - 4);
    x += width;
  }
}

async function upload(install) {
  const file = $("upload-file").files[0];
  const out = $("upload-result");
  if (!file) { out.textContent = "Choose a .yaml file first."; return; }
  const text = await file.text();
  const {status, data} = await api("POST", "/api/scenarios", {filename: file.name, text, install});
  if (status === 200) {
    out.textContent = file.name + ": ok (" + data.name + ")" + (data.installed ? ", installed" : "");
  } else {
    out.textContent = (data.errors || [data.error || ("failed: " + status)]).join("\n");
  }
}

async function loadAudit() {
  const {data} = await api("GET", "/api/audit");
  const body = document.querySelector("#audit tbody");
  body.replaceChildren(...(Array.isArray(data) ? data : []).map((e) => {
    const tr = el("tr");
    for (const v of [e.session, e.started ? localDate(e.started) : "", e.t == null ? "" : clock(e.t), e.by, e.action, e.detail]) tr.append(el("td", String(v ?? "")));
    return tr;
  }));
}

// --- wiring ------------------------------------------------------------------------------------

function showTab(name) {
  for (const b of document.querySelectorAll(".tab")) b.classList.toggle("selected", b.dataset.tab === name);
  for (const p of document.querySelectorAll(".panel")) p.classList.toggle("hidden", p.id !== "tab-" + name);
  if (name === "history") loadSessions();
  if (name === "audit") loadAudit();
  if (name === "about") loadAbout();
}

function connect() {
  const source = new EventSource("/api/events");
  source.onmessage = (m) => render(JSON.parse(m.data));
  source.onerror = async () => {
    const {status} = await api("GET", "/api/state");  // 401: the sign-in ended, not the chair
    if (status === 401) { source.close(); return; }
    if (last) render({...last, connected: false});
  };
}

function wire() {
  for (const b of document.querySelectorAll(".tab")) b.addEventListener("click", () => showTab(b.dataset.tab));
  stopPage.onStopped = (d) => say("Stopped: every output is off (stop number " + d.stop_seq + ").");
  const signOut = $("sign-out");
  if (signOut) {  // two taps: a stray one never signs the caregiver out mid-session
    $("logout").addEventListener("submit", (ev) => {
      if (signOut.dataset.armed === "yes") return;
      ev.preventDefault();
      signOut.dataset.armed = "yes";
      signOut.textContent = "Tap again to sign out";
      setTimeout(() => { signOut.dataset.armed = "no"; signOut.textContent = "Sign out"; }, 4000);
    });
  }
  $("calmer").addEventListener("click", () => command("/api/calmer", {}, "One step calmer."));
  $("hold").addEventListener("click", () => command("/api/hold", {on: !(last && last.hold)}));
  $("end-gently").addEventListener("click", () => command("/api/end-gently", {}, "Ending gently."));
  $("manual-up").addEventListener("click", () => manual(1));
  $("manual-down").addEventListener("click", () => manual(-1));
  $("alert-now-ack").addEventListener("click", () => acknowledge($("alert-now-ack").dataset.id));
  for (const id of ["ack-all", "ack-all-list"]) {
    $(id).addEventListener("click", () => command("/api/alerts/ack-all", {}, "All acknowledged."));
  }
  for (const b of document.querySelectorAll(".observe")) {
    b.addEventListener("click", () => command("/api/observe", {what: b.dataset.what}, "Noted: " + b.textContent));
  }
  $("start-form").addEventListener("submit", (ev) => { ev.preventDefault(); start(); });
  $("start-child").addEventListener("change", showAuto);
  $("start-scenario").addEventListener("change", showAuto);
  $("start-manual").addEventListener("change", showAuto);
  if (role === "therapist") {
    for (const b of document.querySelectorAll(".preview")) b.addEventListener("click", () => preview(b.dataset.id));
    $("upload-check").addEventListener("click", () => upload(false));
    $("upload-install").addEventListener("click", () => upload(true));
  }
  api("GET", "/api/state").then(({data}) => render(data));
  loadChildren();
  connect();
}

document.addEventListener("DOMContentLoaded", wire);
