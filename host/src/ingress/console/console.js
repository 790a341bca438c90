// The platform console: a client of the admin API (the same calls as the CLI), refreshed
// every few seconds. The admin token lives in this tab's sessionStorage only; every text
// from the host (names, log messages, payloads) goes into the page as text, never as HTML.
"use strict";

const TOKEN_KEY = "platform-admin-token";
const REFRESH_MS = 2000;
// Listing dead letters takes them from the queue and puts them back: not on every refresh.
const DEAD_LETTER_REFRESH_MS = 10000;

const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  selected: null,
  // name -> { at, digest, requests, errors, shed }: the previous refresh, for rates.
  last: new Map(),
  services: [],
  historyOf: null,
  deadLettersAt: 0,
  timer: null,
  busy: false,
};

class Refused extends Error {}

const $ = (id) => document.getElementById(id);

/// An element with attributes and children (strings become text nodes).
function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "onclick") node.addEventListener("click", value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, {
      ...options,
      cache: "no-store",
      headers: { ...(options.headers ?? {}), authorization: `Bearer ${state.token}` },
    });
  } catch (error) {
    throw new Error(`the host did not answer (${error.message})`);
  }
  if (response.status === 401) throw new Refused("the admin token was refused");
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    throw new Error(body?.error ?? `${response.status} ${response.statusText}`);
  }
  return body;
}

const post = (path, body) =>
  api(path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: body === undefined ? "" : JSON.stringify(body),
  });

const utc = (time) => new Date(time).toISOString().replace("T", " ").slice(0, 19);
const path = (...parts) => parts.map(encodeURIComponent).join("/");

/// Asks in a modal dialog; true if the operator chose `action`.
function confirmAction(text, action) {
  const dialog = $("confirm");
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = action;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
    $("confirm-ok").focus();
  });
}

function say(text, kind) {
  const result = $("service-result");
  result.className = kind;
  result.textContent = text;
}

// ---- login ---------------------------------------------------------------------------

function showLogin(message) {
  clearTimeout(state.timer);
  state.token = null;
  state.last.clear();
  sessionStorage.removeItem(TOKEN_KEY);
  $("login-view").hidden = false;
  $("services-view").hidden = true;
  $("service-view").hidden = true;
  $("logout").hidden = true;
  $("connection").textContent = "";
  $("login-error").textContent = message ?? "";
  $("token").value = "";
  $("token").focus();
}

async function login(event) {
  event.preventDefault();
  state.token = $("token").value.trim();
  $("login-error").textContent = "";
  try {
    const services = await api("/v1/services");
    sessionStorage.setItem(TOKEN_KEY, state.token);
    showConsole(services);
  } catch (error) {
    showLogin(error instanceof Refused ? "Wrong token: the host refused it." : error.message);
  }
}

function showConsole(services) {
  $("login-view").hidden = true;
  $("services-view").hidden = false;
  $("logout").hidden = false;
  $("token").value = "";
  renderServices(services);
  const wanted = decodeURIComponent(location.hash.slice(1));
  if (services.some((service) => service.name === wanted)) select(wanted);
  schedule();
}

// ---- refresh -------------------------------------------------------------------------

function schedule() {
  clearTimeout(state.timer);
  state.timer = setTimeout(refresh, REFRESH_MS);
}

async function refresh() {
  if (state.busy) return schedule();
  try {
    renderServices(await api("/v1/services"));
    if (state.selected) await refreshService(false);
    $("connection").textContent = `Refreshed ${utc(Date.now())} UTC`;
    $("connection").className = "muted";
  } catch (error) {
    if (error instanceof Refused) return showLogin("The host no longer accepts this token.");
    $("connection").textContent = `Not refreshed: ${error.message}; trying again`;
    $("connection").className = "error";
  }
  schedule();
}

function rate(now, before, seconds, field) {
  if (!before || seconds <= 0 || now[field] < before[field]) return "–";
  return ((now[field] - before[field]) / seconds).toFixed(1);
}

function renderServices(services) {
  const now = performance.now();
  state.services = services;
  const rows = services.map((service) => {
    const before = state.last.get(service.name);
    const sameVersion = before && before.digest === service.digest;
    const seconds = before ? (now - before.at) / 1000 : 0;
    state.last.set(service.name, { ...service, at: now });
    return el(
      "tr",
      { "data-service": service.name, "aria-current": service.name === state.selected },
      el("td", {}, el("button", {
        type: "button",
        class: "link",
        "aria-label": `Open ${service.name}`,
        onclick: () => select(service.name),
      }, service.name)),
      el("td", { class: "number" }, service.port),
      el("td", { "data-field": "version", title: service.digest }, el("code", {}, service.version)),
      el("td", { "data-field": "state" }, service.state),
      el("td", { class: "number" }, sameVersion ? rate(service, before, seconds, "requests") : "–"),
      el("td", { class: "number" }, sameVersion ? rate(service, before, seconds, "errors") : "–"),
      el("td", { class: "number" }, rate(service, before, seconds, "shed")),
      el("td", { class: "number" }, `${service.instances_in_use} / ${service.max_concurrent}`),
    );
  });
  $("services").tBodies[0].replaceChildren(...rows);
}

// ---- one service ---------------------------------------------------------------------

function select(name) {
  state.selected = name;
  state.historyOf = null;
  state.deadLettersAt = 0;
  history.replaceState(null, "", `#${encodeURIComponent(name)}`);
  $("service-view").hidden = false;
  $("service-title").textContent = name;
  say("", "");
  for (const row of $("services").tBodies[0].rows) {
    row.setAttribute("aria-current", String(row.dataset.service === name));
  }
  refreshService(true).catch((error) => say(error.message, "error"));
}

async function refreshService(force) {
  const name = state.selected;
  const service = state.services.find((candidate) => candidate.name === name);
  if (!service) return;
  // The history changes only with the serving version.
  $("service-serving").textContent =
    `Port ${service.port} · serving ${service.version} · digest ${service.digest} · ` +
    `deployed ${utc(service.deployed_at)} UTC by ${service.source}`;
  if (force || state.historyOf !== service.digest) {
    renderHistory(name, await api(`/v1/services/${path(name)}/versions`));
    state.historyOf = service.digest;
  }
  renderErrors(await api(`/v1/services/${path(name)}/errors`));
  if (force || Date.now() - state.deadLettersAt > DEAD_LETTER_REFRESH_MS) {
    await renderDeadLetters(service);
    state.deadLettersAt = Date.now();
  }
}

function renderHistory(name, versions) {
  const serving = versions.find((version) => version.current);
  const rows = versions.map((version) =>
    el(
      "tr",
      { "data-digest": version.digest },
      el("td", { title: version.digest }, el("code", {}, version.version)),
      el("td", {}, utc(version.deployed_at)),
      el("td", {}, version.source),
      el("td", {}, version.current
        ? el("strong", {}, "serving")
        : el("button", {
            type: "button",
            onclick: () => rollback(name, serving, version),
          }, `Roll back to ${version.version}`)),
    ),
  );
  $("history").tBodies[0].replaceChildren(...rows);
}

async function rollback(name, serving, version) {
  const from = serving ? serving.version : "the serving version";
  const sure = await confirmAction(
    `Make ${name} serve ${version.version} instead of ${from}? New requests go to ` +
      `${version.version} as soon as it passes its health check; requests in flight finish ` +
      "on the old version.",
    `Roll back to ${version.version}`,
  );
  if (!sure) return;
  state.busy = true;
  say(`Rolling ${name} back to ${version.version}…`, "muted");
  try {
    const done = await post(`/v1/services/${path(name)}/rollback`, { to: version.digest });
    say(
      `${done.service} now serves ${done.version} (was ${done.previous.slice(0, 12)}); ` +
        `swapped in ${done.swap_ms.toFixed(1)} ms.`,
      "ok",
    );
  } catch (error) {
    say(`Rollback refused: ${error.message}`, "error");
  } finally {
    state.busy = false;
  }
  await refresh();
}

function renderErrors(entries) {
  const rows = entries.map((entry) => {
    const fields = Object.entries(entry.fields).map(([key, value]) => `${key}=${value}`);
    return el(
      "tr",
      { "data-level": entry.level },
      el("td", {}, utc(entry.at)),
      el("td", { class: entry.level === "error" ? "error" : "" }, entry.level),
      el("td", {}, el("code", {}, entry.request_id ?? "–")),
      el("td", {}, entry.message, fields.length ? el("div", { class: "muted" }, fields.join(" ")) : null),
    );
  });
  if (rows.length === 0) {
    rows.push(el("tr", {}, el("td", { colspan: 4, class: "muted" }, "None since the host started.")));
  }
  $("errors").tBodies[0].replaceChildren(...rows);
}

async function renderDeadLetters(service) {
  const sections = [];
  for (const subscription of service.subscriptions ?? []) {
    const queue = subscription.queue;
    let letters;
    try {
      letters = await api(`/v1/queues/${path(queue)}/dead-letters`);
    } catch (error) {
      if (error instanceof Refused) throw error;
      sections.push(el("h3", {}, `Dead letters of ${queue}`), el("p", { class: "error" }, error.message));
      continue;
    }
    const rows = letters.map((letter) =>
      el(
        "tr",
        { "data-dead-letter": letter.id },
        el("td", {}, el("code", {}, letter.id)),
        el("td", {}, letter.routing_key),
        el("td", { class: "number" }, letter.retries),
        el("td", {}, letter.reason ?? "–"),
        el("td", {}, el("pre", {}, letter.payload)),
        el("td", {}, el("button", {
          type: "button",
          onclick: () => replay(service.name, queue, letter.id),
        }, "Replay")),
      ),
    );
    sections.push(
      el("h3", {}, `Dead letters of ${queue} (${letters.length})`),
      el("div", { class: "actions" },
        el("button", { type: "button", onclick: () => select(service.name) }, "Refresh"),
        letters.length
          ? el("button", { type: "button", onclick: () => replay(service.name, queue, null) }, "Replay all")
          : null),
      letters.length
        ? el("div", { class: "scroll" }, el("table", { "data-queue": queue },
            el("thead", {}, el("tr", {},
              ["Id", "Routing key", "Retries", "Reason", "Payload"].map((title) => el("th", { scope: "col" }, title)),
              el("th", { scope: "col" }, el("span", { class: "sr-only" }, "Action")))),
            el("tbody", {}, rows)))
        : el("p", { class: "muted" }, "No dead letters."),
    );
  }
  $("dead-letters").replaceChildren(...sections);
}

async function replay(name, queue, id) {
  const what = id ? `dead letter ${id}` : `every dead letter of ${queue}`;
  if (!(await confirmAction(`Send ${what} back to ${queue}, its retries reset?`, "Replay"))) return;
  try {
    const done = await post(`/v1/queues/${path(queue)}/dead-letters/replay`, id ? { id } : {});
    say(`${done.replayed} dead letter(s) back in ${done.queue}.`, "ok");
  } catch (error) {
    say(`Replay refused: ${error.message}`, "error");
  }
  if (state.selected === name) await refreshService(true).catch((error) => say(error.message, "error"));
}

// ---- start ---------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("login").addEventListener("submit", login);
  $("logout").addEventListener("click", () => showLogin("Logged out."));
  if (!state.token) return showLogin();
  api("/v1/services")
    .then(showConsole)
    .catch((error) => showLogin(error instanceof Refused ? "" : error.message));
});
