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
  $("offline").classList.add("hidden");
}

function say(text) { $("message").textContent = text; }

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
  $("offline").classList.toggle("hidden", s.connected !== false
    || !$("signed-out").classList.contains("hidden"));
  $("state").textContent = STATE_WORDS[s.state] || s.state;
  $("state").dataset.state = s.state;
  $("scenario").textContent = s.scenario || "";
  $("why").textContent = s.why ? "(" + s.why + ")" : "";
  $("child").textContent = childName(s.child);
  $("phase").textContent = s.phase || "—";
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
  renderEstop(s);
  renderThermal(s.thermal);
  renderControls(s);
  renderAlerts(s.alerts || []);
  fillScenarios(s.scenarios || []);
}

// The breathing indicator: light, sound and vibration swell together on the scenario's tempo;
// the dot grows as they do, so a caregiver can breathe along. Animated here between updates
// from the breath's phase and rate at the time of the state.
let breath = null;

function renderBreath(s) {
  const dark = ["light", "audio", "vibration"].every((k) => !(s.levels || {})[k]);
  breath = s.breath && !dark ? {bpm: s.breath.bpm, phase: s.breath.phase, at: performance.now()} : null;
  $("breath-row").classList.toggle("hidden", !breath);
  if (breath) requestAnimationFrame(animateBreath);
}

function animateBreath(now) {
  if (!breath) return;
  const phase = (breath.phase + (now - breath.at) / 1000 * breath.bpm / 60) % 1;
  const swell = 0.5 - 0.5 * Math.cos(2 * Math.PI * phase);
  $("breath-dot").style.transform = "scale(" + (0.5 + 0.5 * swell).toFixed(3) + ")";
  $("breath-words").textContent = (phase < 0.5 ? "breathe in" : "breathe out") + " · "
    + breath.bpm.toFixed(1) + " a minute";
  requestAnimationFrame(animateBreath);
}

function renderEstop(s) {
  const banner = $("estop-banner");
  banner.classList.toggle("hidden", !s.estop);
  if (!s.estop) return;
  if (s.estop_pressed) {
    banner.textContent = "⚠ E-STOP PRESSED: every output is off. Twist the e-stop free, then hold the reset button at the chair.";
  } else if (s.station_stop) {
    banner.textContent = "⚠ STOPPED from the station: every output is off. Press Start for a new session, or hold the reset button at the chair.";
  } else {
    banner.textContent = "⚠ E-STOP LATCHED (" + (s.latch || "emergency stop") + "): every output is off. Hold the reset button at the chair to reset it; then Start.";
  }
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
  $("start").disabled = playing || s.estop_pressed || (s.estop && !s.station_stop);
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
  return child ? child.name + " (" + id + ")" : id;
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
  if (last) $("child").textContent = childName(last.child);
  showAuto();
}

// What "auto" would play for the chosen child, and why ("Calm blue waves: calm in 4 of 5").
async function showAuto() {
  const child = $("start-child").value, out = $("start-why");
  if ($("start-scenario").value !== "auto") { out.textContent = ""; return; }
  if (!child || child === NO_PROFILE) {
    out.textContent = child ? "auto chooses for a child: choose one" : "";
    return;
  }
  const {status, data} = await api("GET", "/api/children/" + encodeURIComponent(child) + "/auto");
  if ($("start-child").value !== child) return;  // changed meanwhile
  out.textContent = status === 200 ? "auto: " + data.why : (data.error || "");
}

async function start() {
  const child = $("start-child").value;
  if (!child) { say("Choose the child first."); return; }
  const body = {scenario: $("start-scenario").value, manual: $("start-manual").checked,
    child: child === NO_PROFILE ? null : child};
  // The newest stop this page has shown: a STOP from anywhere after it refuses this Start.
  if (last && Number.isInteger(last.stop_seq)) body.after_stop = last.stop_seq;
  const {status, data} = await api("POST", "/api/start", body);
  say(status === 200 ? "Started: " + data.scenario + (data.child ? " for " + childName(data.child) : "")
    : (data.error || ("failed: " + status)));  // why: beside the scenario, above
  if (status === 200) showAuto();
}

// --- Alerts ------------------------------------------------------------------------------------

function renderAlerts(alerts) {
  const open = alerts.filter((a) => !a.acknowledged);
  $("alert-count").textContent = open.length ? String(open.length) : "";
  const list = $("alerts");
  const key = JSON.stringify(alerts.map((a) => [a.id, a.acknowledged]));
  if (list.dataset.key === key) return;  // unchanged: keep the buttons under the finger
  list.dataset.key = key;
  const items = alerts.slice().reverse().map((a) => {
    const li = el("li", undefined, a.acknowledged ? "acknowledged" : "open");
    const when = new Date(a.at * 1000).toLocaleTimeString();
    const text = el("span", when + " — " + a.reason + ": " + a.detail);
    li.append(text);
    if (!a.acknowledged) {
      const b = el("button", "Acknowledge", "ack");
      b.dataset.id = a.id;
      b.addEventListener("click", () => command("/api/alerts/" + a.id + "/ack", {}, "acknowledged"));
      li.append(b);
    } else {
      li.append(el("span", "✓ acknowledged"));
    }
    return li;
  });
  list.replaceChildren(...items);
}

// --- History -----------------------------------------------------------------------------------

async function loadSessions() {
  const {data} = await api("GET", "/api/sessions");
  $("sessions").replaceChildren(...(Array.isArray(data) ? data : []).map((s) => {
    const li = el("li");
    const b = el("button", "#" + s.id + " " + s.started.replace("T", " ").slice(0, 16) + " " + s.scenario
                 + (s.child ? " · " + childName(s.child) : ""));
    b.addEventListener("click", () => showSession(s.id));
    li.append(b);
    return li;
  }));
}

async function showSession(id) {
  const {data} = await api("GET", "/api/sessions/" + id);
  const csv = $("csv");
  csv.href = "/api/sessions/" + id + ".csv";
  csv.classList.remove("hidden");
  plotSession($("plot"), data.events || []);
}

function plotSession(canvas, events) {
  const ctx = canvas.getContext("2d"), w = canvas.width, h = canvas.height, top = 70;
  ctx.clearRect(0, 0, w, h);
  const end = Math.max(1, ...events.map((e) => e.t));
  const x = (t) => 4 + (w - 8) * t / end;
  const moodY = {positive: 8, neutral: 26, negative: 44, no_face: 62};
  let prev = null;
  ctx.fillStyle = "#7b2cbf";
  for (const e of events.filter((e) => e.type === "mood")) {
    if (prev) ctx.fillRect(x(prev.t), moodY[prev.mood] - 3, x(e.t) - x(prev.t), 6);
    prev = e;
  }
  if (prev) ctx.fillRect(x(prev.t), moodY[prev.mood] - 3, x(end) - x(prev.t), 6);
  const colours = {light: "#e0a800", audio: "#1f77b4", vibration: "#2ca02c"};
  for (const key of Object.keys(colours)) {
    ctx.strokeStyle = colours[key];
    ctx.lineWidth = 2;
    ctx.beginPath();
    let y = h - 4;
    ctx.moveTo(x(0), y);
    for (const e of events.filter((e) => e.type === "levels")) {
      ctx.lineTo(x(e.t), y);
      y = h - 4 - (h - top - 8) * e[key];
      ctx.lineTo(x(e.t), y);
    }
    ctx.lineTo(x(end), y);
    ctx.stroke();
  }
  for (const e of events) {
    if (e.type === "estop" && e.action === "press") {
      ctx.fillStyle = "#000";
      ctx.fillRect(x(e.t) - 1, 0, 3, h);
    } else if (e.type === "observation") {
      ctx.fillStyle = e.what === "upset" ? "#d62828" : e.what === "calm" ? "#2a9d3a" : "#555";
      ctx.beginPath();
      ctx.arc(x(e.t), top - 4, 5, 0, 2 * Math.PI);
      ctx.fill();
    }
  }
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
    for (const v of [e.session, e.started, e.t == null ? "" : clock(e.t), e.by, e.action, e.detail]) tr.append(el("td", String(v ?? "")));
    return tr;
  }));
}

// --- wiring ------------------------------------------------------------------------------------

function showTab(name) {
  for (const b of document.querySelectorAll(".tab")) b.classList.toggle("selected", b.dataset.tab === name);
  for (const p of document.querySelectorAll(".panel")) p.classList.toggle("hidden", p.id !== "tab-" + name);
  if (name === "history") loadSessions();
  if (name === "audit") loadAudit();
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
  $("manual-up").addEventListener("click", () => command("/api/manual", {steps: 1}));
  $("manual-down").addEventListener("click", () => command("/api/manual", {steps: -1}));
  for (const b of document.querySelectorAll(".observe")) {
    b.addEventListener("click", () => command("/api/observe", {what: b.dataset.what}, "Noted: " + b.textContent));
  }
  $("start-form").addEventListener("submit", (ev) => { ev.preventDefault(); start(); });
  $("start-child").addEventListener("change", showAuto);
  $("start-scenario").addEventListener("change", showAuto);
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
