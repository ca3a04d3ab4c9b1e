// The call page: place a call with the REST interface, follow it on /events.
"use strict";

const KINDS = ["initiated", "ringing", "answered", "transferring", "connected",
               "failed", "completed", "sip"];
const MAX_CALLS = 20;      // calls whose events are kept in the page
const MAX_EVENTS = 200;    // events kept per call
const events = new Map();  // call id -> [event data], in order
let current = null;        // the id of the call this page placed last

function $(id) { return document.getElementById(id); }

// Absolute URLs on the page's origin: the page may have been opened with credentials in
// its URL (https://user:pin@host/), and fetch() refuses URLs that carry them; the browser
// sends the credentials it cached for this origin by itself.
function here(path) { return new URL(path, window.location.origin).href; }

function remember(data) {
  let list = events.get(data.call);
  if (!list) {
    list = [];
    events.set(data.call, list);
    while (events.size > MAX_CALLS) events.delete(events.keys().next().value);
  }
  if (list.length && list[list.length - 1].seq >= data.seq) return false;  // seen
  list.push(data);
  if (list.length > MAX_EVENTS) list.shift();
  return true;
}

function line(data) {
  const item = document.createElement("li");
  const at = document.createElement("span");
  at.className = "at";
  at.textContent = data.timestamp ? new Date(data.timestamp).toLocaleTimeString() : "";
  const kind = document.createElement("span");
  kind.className = "kind kind-" + data.event;
  kind.textContent = data.event;
  const text = document.createElement("span");
  text.textContent = data["status-line"] ? data.method + " " + data["status-line"]
                                          : "call " + data.state;
  item.append(at, kind, text);
  return item;
}

function showCurrent() {
  const list = $("timeline");
  list.replaceChildren(...(events.get(current) || []).map(line));
  const named = (events.get(current) || []).filter((d) => d.event !== "sip");
  $("current-state").textContent = named.length ? "— " + named[named.length - 1].event : "";
}

async function refreshRecent() {
  const answer = await fetch(here("/calls?limit=10"), {headers: {Accept: "application/json"}});
  if (!answer.ok) return;
  const rows = (await answer.json()).calls.map((call) => {
    const row = document.createElement("tr");
    row.dataset.call = call.id;
    for (const value of [new Date(call.created * 1000).toLocaleTimeString(), call.calling,
                         call.called, call.mode, call.state]) {
      const cell = document.createElement("td");
      cell.textContent = value;
      row.append(cell);
    }
    return row;
  });
  $("recent").replaceChildren(...rows);
}

function follow() {
  const source = new EventSource(here("/events"));
  source.onopen = () => { $("live").textContent = "live"; $("live").className = "on"; };
  source.onerror = () => { $("live").textContent = "reconnecting…"; $("live").className = "off"; };
  for (const kind of KINDS) {
    source.addEventListener(kind, (message) => {
      const data = JSON.parse(message.data);
      if (!remember(data)) return;
      if (data.call === current) showCurrent();
      if (kind !== "sip") refreshRecent();
    });
  }
}

async function place(event) {
  event.preventDefault();
  const result = $("result");
  const calling = $("calling").value.trim();
  const called = $("called").value.trim();
  const query = new URLSearchParams({sipMethod: $("mode").value});
  if ($("agent").value.trim()) query.set("agent", $("agent").value.trim());
  const url = "/callcontroller/" + encodeURIComponent(calling) + "/" +
              encodeURIComponent(called) + "?" + query;
  result.className = "";
  result.textContent = "placing…";
  try {
    const answer = await fetch(here(url), {method: "POST", headers: {Accept: "application/json"}});
    const body = await answer.json().catch(() => ({}));
    const location = answer.headers.get("Location") || "";
    if (!answer.ok) {
      result.className = "error";
      result.textContent = answer.status + " " + (body["status-text"] || body["error-text"] || answer.statusText);
      return;
    }
    current = location.split("/calls/")[1] || null;
    result.textContent = "call " + current + " placed";
    showCurrent();
    refreshRecent();
  } catch (error) {
    result.className = "error";
    result.textContent = "could not reach the daemon: " + error;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("place").addEventListener("submit", place);
  follow();
  refreshRecent();
});
