// SPDX-License-Identifier: MIT OR Apache-2.0
//! The search page: one HTML file that calls the JSON API from the browser (same origin, so
//! the browser's basic-auth login covers both).

use axum::response::Html;

pub async fn page() -> Html<&'static str> {
    Html(PAGE)
}

const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ALPR archive</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:system-ui,sans-serif;margin:1.5em;background:#fafafa}
form{display:flex;flex-wrap:wrap;gap:.5em;align-items:end;margin-bottom:1em}
label{display:flex;flex-direction:column;font-size:.8em;color:#444}
input,select,button{font-size:1em;padding:.3em}
table{border-collapse:collapse;width:100%;background:#fff}
td,th{border-bottom:1px solid #ddd;padding:.3em .6em;text-align:left}
img{height:48px}
.plate{font-family:monospace;font-size:1.2em;cursor:pointer;color:#035}
#status{color:#666;margin:.5em 0}
</style></head><body>
<h1>ALPR archive</h1>
<form id="f">
<label>Plate (? one character, * any)<input id="plate" name="plate" maxlength="32" autofocus></label>
<label>Match<select id="match" name="match"><option value="fuzzy">fuzzy (OCR confusions)</option>
<option value="exact">exact</option><option value="wildcard">wildcard</option></select></label>
<label>Camera<input id="camera" name="camera" maxlength="128"></label>
<label>From<input id="from" name="from" type="datetime-local"></label>
<label>To<input id="to" name="to" type="datetime-local"></label>
<button type="submit">Search</button>
</form>
<div id="status"></div>
<table><thead><tr><th>Crop</th><th>Plate</th><th>Camera</th><th>First seen</th><th>Confidence</th><th>Vehicle</th></tr></thead>
<tbody id="rows"></tbody></table>
<button id="more" hidden>More</button>
<script>
let next = null;
const $ = id => document.getElementById(id);
function params() {
  const p = new URLSearchParams();
  for (const k of ["plate", "match", "camera"]) if ($(k).value) p.set(k, $(k).value);
  for (const k of ["from", "to"]) if ($(k).value) p.set(k, new Date($(k).value).toISOString());
  return p;
}
function cell(tr, text) { const td = document.createElement("td"); td.textContent = text; tr.appendChild(td); return td; }
function show(events, append) {
  const body = $("rows");
  if (!append) body.textContent = "";
  for (const e of events) {
    const tr = document.createElement("tr");
    tr.className = "event";
    const td = cell(tr, "");
    if (e.image_url) { const img = document.createElement("img"); img.src = e.image_url; img.alt = e.plate_text; td.appendChild(img); }
    const p = cell(tr, e.plate_text); p.className = "plate";
    p.onclick = () => { $("plate").value = e.plate_text; $("match").value = "exact"; search(); };
    cell(tr, e.camera_id);
    cell(tr, new Date(e.first_seen).toLocaleString());
    cell(tr, (e.plate_confidence ?? 0).toFixed(2));
    cell(tr, e.vehicle_class ?? "");
    body.appendChild(tr);
  }
}
async function search(append) {
  const p = params();
  if (append && next) p.set("cursor", next);
  $("status").textContent = "searching...";
  const r = await fetch("/api/events?" + p.toString());
  const j = await r.json();
  if (!r.ok) { $("status").textContent = j.error || r.statusText; return; }
  show(j.events, append);
  next = j.next;
  $("more").hidden = !next;
  $("status").textContent = $("rows").children.length + " events";
}
$("f").onsubmit = ev => { ev.preventDefault(); search(false); };
$("more").onclick = () => search(true);
search(false);
</script></body></html>
"#;
