// STOP, on every page of the station (the sign-in page too, on the chair's own display).
// A STOP that does not reach the chair (an error, no answer within 2 s) fills the screen:
// "STOP did NOT reach the chair: press the red button on the chair". It is sent again every
// second for 10 s, each retry naming the stop number this page knew when STOP was pressed
// (the chair answers a retry "already" only while a newer stop still holds it, and otherwise
// carries it out, a later session included); the message stays until the caregiver dismisses it.
"use strict";

const STOP_ANSWER_MS = 2000, STOP_RETRY_MS = 1000, STOP_RETRIES_FOR_MS = 10000;

const stopPage = {
  meta: (name) => { const m = document.querySelector('meta[name="' + name + '"]'); return m ? m.content : ""; },
  // The newest stop number this page has seen (station.js keeps it current).
  seq: null,
  retrying: null,
  onStopped: null,  // station.js: what to say once the chair confirmed
};

async function sendStop(body) {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), STOP_ANSWER_MS);
  try {
    const headers = {"Content-Type": "application/json", "X-Stop-Token": stopPage.meta("stop-token")};
    const csrf = stopPage.meta("csrf-token");
    if (csrf) headers["X-CSRF-Token"] = csrf;
    const r = await fetch("/api/stop", {method: "POST", credentials: "same-origin", headers,
      body: JSON.stringify(body), signal: abort.signal});
    let data = {};
    try { data = await r.json(); } catch (e) { data = {}; }
    return {ok: r.status === 200 && data.ok === true, status: r.status, data};
  } catch (e) {
    return {ok: false, status: 0, data: {error: abort.signal.aborted ? "no answer within 2 s" : String(e)}};
  } finally {
    clearTimeout(timer);
  }
}

function stopFailedShow(why) {
  const box = document.getElementById("stop-failed");
  box.classList.remove("hidden");
  box.dataset.state = "failed";
  document.getElementById("stop-failed-detail").textContent =
    "Why: " + why + ". Trying again every second for 10 s…";
}

function stopFailedSay(text, state) {
  const box = document.getElementById("stop-failed");
  box.dataset.state = state;
  document.getElementById("stop-failed-detail").textContent = text;
}

function stopFailedDismiss() {
  if (stopPage.retrying) { clearTimeout(stopPage.retrying); stopPage.retrying = null; }
  document.getElementById("stop-failed").classList.add("hidden");
}

async function pressStop() {
  const known = Number.isInteger(stopPage.seq) ? stopPage.seq : parseInt(stopPage.meta("stop-seq"), 10);
  const first = await sendStop({});
  if (first.ok) {
    if (stopPage.onStopped) stopPage.onStopped(first.data);
    return;
  }
  stopFailedShow(first.data.error || ("answer " + first.status));
  const until = Date.now() + STOP_RETRIES_FOR_MS;
  const retry = async () => {
    const body = Number.isInteger(known) ? {for_stop: known} : {};
    const r = await sendStop(body);
    if (document.getElementById("stop-failed").classList.contains("hidden")) return;  // dismissed
    if (r.ok) {
      stopFailedSay("The chair has now confirmed the STOP (stop number " + r.data.stop_seq
        + "). Check on the child, then dismiss this.", "confirmed");
      if (stopPage.onStopped) stopPage.onStopped(r.data);
    } else if (Date.now() >= until) {
      stopFailedSay("Still no confirmation after 10 s (" + (r.data.error || ("answer " + r.status))
        + "). Press the red button on the chair.", "gave-up");
    } else {
      stopPage.retrying = setTimeout(retry, STOP_RETRY_MS);
    }
  };
  stopPage.retrying = setTimeout(retry, STOP_RETRY_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  for (const b of document.querySelectorAll("button.stop")) b.addEventListener("click", pressStop);
  const dismiss = document.getElementById("stop-dismiss");
  if (dismiss) dismiss.addEventListener("click", stopFailedDismiss);
});
