// relaxd clinic overview. Plain JavaScript, no build step. Everything from a chair is shown
// with textContent (never as HTML); every command is a POST with the page's CSRF token.
"use strict";

const csrf = document.querySelector('meta[name="csrf-token"]').content;
const role = document.querySelector('meta[name="role"]').content;
const $ = (id) => document.getElementById(id);
const LOOK = {running: "running", halted: "halted", stopped: "stopped", waiting: "waiting",
  "daemon down": "bridge up, daemon down", lost: "lost", stale: "stale (no heartbeat)"};
// Only what lowers stimulation is offered; the stop is a software stop, not an e-stop.
const COMMANDS = [["stop", "Software stop"], ["calmer", "Calmer"], ["end-gently", "End gently"],
  ["hold", "Hold"]];

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (cls) node.className = cls;
  return node;
}

async function send(chair, command, label) {
  if (command === "stop" && !window.confirm(`Software stop of chair ${chair}? ` +
      "Every output goes to 0; only the chair's own station Start or its reset button clears it.")) {
    return;
  }
  $("message").textContent = `${label}: chair ${chair}…`;
  const response = await fetch(`/api/chairs/${encodeURIComponent(chair)}/${command}`, {
    method: "POST", credentials: "same-origin",
    headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf}, body: "{}"});
  if (response.status === 401) { window.location = "/login"; return; }
  let data = {};
  try { data = await response.json(); } catch (e) { data = {}; }
  $("message").textContent = response.ok ? `${label}: chair ${chair}: done`
    : `${label}: chair ${chair}: ${data.error || response.status}`;
}

function tile(chair, commands) {
  const node = el("article", undefined, "tile " + chair.tile.replace(" ", "-"));
  node.dataset.chair = chair.chair;
  if (chair.alerts.length) node.classList.add("alerting");
  node.append(el("h3", `${chair.chair}${chair.room ? " · " + chair.room : ""}`));
  node.append(el("div", LOOK[chair.tile] || chair.tile, "look"));
  const s = chair.state || {};
  if (s.child) node.append(el("div", `child ${s.child}`));
  if (s.scenario) node.append(el("div", `${s.scenario}${s.phase ? " · " + s.phase : ""}`));
  if (s.latch) node.append(el("div", s.latch, "latch"));
  if (chair.alerts.length) node.append(el("div", `${chair.alerts.length} alert(s)`));
  if (role === "nurse" && commands && !["lost", "daemon down"].includes(chair.tile)) {
    for (const [command, label] of COMMANDS) {
      const button = el("button", label, command === "stop" ? "soft-stop" : "");
      button.dataset.command = command;
      button.addEventListener("click", () => send(chair.chair, command, label));
      node.append(button);
    }
  }
  return node;
}

// A tile is drawn again only when what it shows changes, so that a button is not replaced
// under the nurse's finger by the state's second-by-second updates.
const drawn = new Map();  // chair -> [what its tile shows, the tile]

function tiles(view) {
  const nodes = view.chairs.map((chair) => {
    const s = chair.state || {};
    const shows = JSON.stringify([chair.tile, chair.room, s.child, s.scenario, s.phase, s.latch,
      chair.alerts.length, view.commands]);
    const old = drawn.get(chair.chair);
    if (old && old[0] === shows) return old[1];
    const node = tile(chair, view.commands);
    drawn.set(chair.chair, [shows, node]);
    return node;
  });
  const box = $("tiles");
  if (nodes.length !== box.children.length || nodes.some((n, i) => box.children[i] !== n)) {
    box.replaceChildren(...nodes);
  }
}

function row(cells) {
  const tr = el("tr");
  for (const cell of cells) tr.append(el("td", cell === null || cell === undefined ? "" : String(cell)));
  return tr;
}

function draw(view) {
  $("broker-lost").classList.toggle("hidden", view.broker);
  $("read-only").classList.toggle("hidden", view.commands || role !== "nurse");
  tiles(view);
  $("alerts").tBodies[0].replaceChildren(...view.alerts.map((a) => row([
    a.at ? new Date(a.at * 1000).toLocaleTimeString() : "", a.chair, a.room, a.child,
    `${a.reason}: ${a.detail}`])));
}

async function sessions() {
  const response = await fetch("/api/sessions", {credentials: "same-origin"});
  if (!response.ok) return;
  const data = await response.json();
  $("sessions").tBodies[0].replaceChildren(...data.sessions.map((s) => row([
    s.started, s.chair, s.child, s.scenario, (s.duration / 60).toFixed(1), s.alerts, s.estops])));
}

function follow() {
  const source = new EventSource("/api/events");
  source.onmessage = (event) => draw(JSON.parse(event.data));
  source.onerror = () => $("broker-lost").classList.remove("hidden");
}

follow();
sessions();
setInterval(sessions, 30000);
