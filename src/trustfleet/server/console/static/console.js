// TrustFleet console: the page's only script (CSP: script-src 'self', no inline code).
// Passkey ceremonies (WebAuthn), confirmation of dangerous forms, and a campaign's live progress.
"use strict";

async function postJson(url, csrf, body) {
  const response = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
    body: body === undefined ? "" : JSON.stringify(body),
  });
  const doc = await response.json();
  if (!response.ok) throw new Error(doc.detail || "refused");
  return doc;
}

function showError(message) {
  const box = document.getElementById("passkey-error");
  if (box) { box.textContent = message; box.hidden = false; }
}

async function passkey(button, register) {
  const csrf = button.dataset.csrf;
  try {
    const options = await postJson(button.dataset.options, csrf);
    const json = options.publicKey || options;
    let credential;
    if (register) {
      const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(json);
      credential = await navigator.credentials.create({ publicKey });
    } else {
      const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(json);
      credential = await navigator.credentials.get({ publicKey });
    }
    let url = button.dataset.finish;
    const name = document.getElementById("passkey-name");
    if (register && name) url += "?name=" + encodeURIComponent(name.value);
    const done = await postJson(url, csrf, credential.toJSON());
    window.location.assign(done.next);
  } catch (error) {
    showError(String(error.message || error));
  }
}

function pollCampaign(section) {
  const ended = ["completed", "aborted"];
  const set = (id, value) => {
    const node = document.getElementById(id);
    if (node) node.textContent = String(value);
  };
  async function tick() {
    try {
      const response = await fetch(section.dataset.poll, { credentials: "same-origin" });
      if (!response.ok) return;
      const doc = await response.json();
      set("campaign-state", doc.state);
      set("campaign-wave", doc.current_wave);
      set("campaign-finished", doc.finished);
      set("campaign-failures", doc.failures);
      section.dataset.state = doc.state;
      for (const wave of doc.waves) {
        const row = section.querySelector(`tr[data-wave="${wave.wave}"]`);
        if (!row) continue;
        row.querySelector(".states").textContent =
          Object.entries(wave.states).map(([s, n]) => `${s} ${n}`).join(" · ");
        const bar = row.querySelector("progress");
        if (bar) bar.value = wave.states.committed || 0;
      }
      if (ended.includes(doc.state)) return;
    } catch (error) {
      // the next tick tries again
    }
    window.setTimeout(tick, 2000);
  }
  window.setTimeout(tick, 2000);
}

document.addEventListener("DOMContentLoaded", () => {
  const register = document.getElementById("passkey-register");
  if (register) register.addEventListener("click", () => passkey(register, true));
  const login = document.getElementById("passkey-login");
  if (login) login.addEventListener("click", () => passkey(login, false));
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
  const progress = document.getElementById("progress");
  if (progress && progress.dataset.poll) pollCampaign(progress);
});
