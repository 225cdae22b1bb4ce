// The sign-in page on the chair's own display: an on-page PIN keypad (no system keyboard).
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const pin = document.getElementById("pin");
  if (!pin) return;
  for (const key of document.querySelectorAll(".keypad button[data-key]")) {
    key.addEventListener("click", () => {
      const k = key.dataset.key;
      if (k === "back") pin.value = pin.value.slice(0, -1);
      else if (k === "clear") pin.value = "";
      else if (pin.value.length < 8) pin.value += k;
    });
  }
  pin.form.addEventListener("submit", (ev) => { if (!pin.value) ev.preventDefault(); });
  const wait = parseInt(document.body.dataset.wait || "0", 10);
  const submit = document.getElementById("pin-submit");
  if (wait > 0 && submit) {  // a growing wait after wrong PINs: count it down
    let left = wait;
    submit.disabled = true;
    const tick = () => {
      submit.textContent = left > 0 ? "Wait " + left + " s" : "Sign in";
      submit.disabled = left > 0;
      if (left-- > 0) setTimeout(tick, 1000);
    };
    tick();
  }
});
