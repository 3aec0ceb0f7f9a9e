"use strict";
const frag = new URLSearchParams(location.hash.slice(1));
let token = frag.get("token") || sessionStorage.getItem("weir-token") || "";
if (frag.get("token")) {
  sessionStorage.setItem("weir-token", token);
  // Out of the address bar and the history, where a screenshot or a shared URL would show it.
  history.replaceState(null, "", location.pathname + location.search);
}

const $ = (id) => document.getElementById(id);
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const pct = (x) => (100 * (x || 0)).toFixed(2) + " %";
const when = (ms) => (ms ? new Date(ms).toISOString().replace(".000Z", "Z") : "–");
const age = (ms) => { const s = Math.max(0, (Date.now() - ms) / 1000); return s < 120 ? s.toFixed(0) + " s" : s < 7200 ? (s / 60).toFixed(0) + " min" : (s / 3600).toFixed(1) + " h"; };
const bar = (frac, color) => `<div class="bar"><span style="width:${Math.min(100, 100 * (frac || 0)).toFixed(1)}%;background:${color || "#3b82f6"}"></span></div>`;
// The action bands for the first-deferral rate.
const band = (r) => (r < 0.005 ? ["normal", "band-normal"] : r <= 0.02 ? ["watch", "band-watch"] : ["act", "band-act"]);

async function api(path) {
  const r = await fetch(path, { headers: { Authorization: "Bearer " + token } });
  if (r.status === 401 || r.status === 403) { $("login").hidden = false; throw new Error("the admin token was refused"); }
  if (r.status === 404 && path === "/admin/v1/delivery") return { lanes: {} };
  if (!r.ok) throw new Error(path + ": " + (await r.text()));
  return r.json();
}

// What the chart shows per bucket: recipients sent, then the refusals and feedback on top.
const SERIES = [["sent", 1, "#3b82f6"], ["bounces", 2, "#ef4444"], ["complaints", 3, "#a855f7"], ["rejects", 4, "#9ca3af"]];
const BUCKET_MS = 900000;

// Columns per 15-minute bucket over the last 24 hours: `points` are [bucket_ms, sent, bounces,
// complaints, rejects]; sent is drawn full height, the others as narrower columns in front.
function chart(points, width, height, labels) {
  const end = Math.floor(Date.now() / BUCKET_MS) * BUCKET_MS, start = end - 95 * BUCKET_MS;
  const byBucket = new Map();
  for (const p of points) {
    const row = byBucket.get(p[0]) || [p[0], 0, 0, 0, 0];
    for (let i = 1; i < 5; i++) row[i] += p[i];
    byBucket.set(p[0], row);
  }
  const max = Math.max(1, ...[...byBucket.values()].map((r) => Math.max(r[1], r[2], r[3], r[4])));
  const left = labels ? 40 : 0, bottom = labels ? 16 : 0, w = (width - left) / 96, h = height - bottom;
  let out = `<svg viewBox="0 0 ${width} ${height}" preserveAspectRatio="none" role="img" data-max="${max}">`;
  for (const [b, r] of byBucket) {
    if (b < start) continue;
    const x = left + ((b - start) / BUCKET_MS) * w;
    SERIES.forEach(([name, i, color], k) => {
      if (!r[i]) return;
      const bh = Math.max(1, (r[i] / max) * h), inset = k ? w * 0.25 : 0;
      out += `<rect class="${name}" data-bucket="${b}" data-value="${r[i]}" x="${(x + inset).toFixed(1)}" y="${(h - bh).toFixed(1)}" ` +
        `width="${Math.max(1, w - 1 - 2 * inset).toFixed(1)}" height="${bh.toFixed(1)}" fill="${color}"><title>${new Date(b).toISOString().slice(11, 16)} ${name}: ${r[i]}</title></rect>`;
    });
  }
  if (labels) {
    out += `<text x="0" y="10" font-size="10" fill="#52606d">${max}</text><text x="0" y="${h}" font-size="10" fill="#52606d">0</text>`;
    for (let i = 0; i <= 4; i++) {
      const t = start + i * 24 * BUCKET_MS;
      out += `<text x="${left + i * 24 * w}" y="${height - 2}" font-size="10" fill="#52606d">${new Date(t).toISOString().slice(11, 16)}</text>`;
    }
  }
  return out + "</svg>";
}

function table(el, head, rows) {
  el.innerHTML = "<tr>" + head.map((h) => `<th>${h}</th>`).join("") + "</tr>" +
    (rows.length ? rows.join("") : `<tr><td colspan="${head.length}">none</td></tr>`);
}

async function refresh() {
  const [overview, queue, delivery] = await Promise.all([
    api("/admin/v1/overview"), api("/admin/v1/queue/summary"), api("/admin/v1/delivery"),
  ]);
  $("chart").innerHTML = chart(overview.flatMap((a) => a.series || []), 960, 180, true) +
    `<div class="legend">${SERIES.map(([n, , c]) => `<i style="background:${c}"></i>${n}`).join("")}</div>`;
  table($("accounts"), ["account", "region", "mode", "sent 24 h", "last 24 h", "quota use", "max rate /s", "bounce rate", "complaint rate", "enforcement"],
    overview.map((a) => {
      const quota = a.max_24h < 0 ? "unlimited" : `${a.sent_last_24h} / ${a.max_24h}`;
      const use = a.max_24h > 0 ? a.sent_last_24h / a.max_24h : 0;
      return `<tr data-account="${esc(a.account)}"><td>${esc(a.account)}</td><td>${esc(a.region)}</td><td>${a.production ? "production" : "sandbox"}</td>` +
        `<td class="num">${a.sent_last_24h}</td><td class="spark">${chart(a.series || [], 192, 24, false)}</td><td>${esc(quota)} ${bar(use)}</td><td class="num">${a.max_rate < 0 ? "unlimited" : a.max_rate}</td>` +
        `<td class="num">${pct(a.bounce_rate)}</td><td class="num">${pct(a.complaint_rate)}</td><td>${esc(a.enforcement)}${a.sending_enabled ? "" : " (paused)"}</td></tr>`;
    }));
  table($("queue"), ["state", "lane", "recipients", "messages", "oldest"],
    queue.map((q) => `<tr data-state="${esc(q.state)}"><td>${esc(q.state)}</td><td>${esc(q.lane || "not attempted yet")}</td>` +
      `<td class="num">${q.recipients}</td><td class="num">${q.messages}</td><td>${age(q.oldest_created_ms)}</td></tr>`));
  const lanes = Object.entries(delivery.lanes || {});
  table($("lanes"), ["lane", "provider", "state", "safe rate /min", "connections", "first-deferral", "final delivery", "delivered", "deferrals", "timeline"],
    lanes.map(([key, l]) => {
      const [b, cls] = band(l.first_deferral_rate);
      const tl = (l.timeline || []).slice(-8).map((e) =>
        `<li>${esc(e.kind)} → ${Math.round(e.rate_per_min)}/min, ${e.connections} conn: ${esc(e.reason)}</li>`).join("");
      return `<tr data-lane="${esc(key)}"><td>${esc(key)}</td><td>${esc(l.provider)}</td><td>${l.paused ? "paused" : l.bulk_allowed === false ? "bulk held" : "sending"}</td>` +
        `<td class="num">${Math.round(l.safe_rate_per_minute || 0)}</td><td class="num">${l.connections_allowed ?? "–"}</td>` +
        `<td class="${cls}">${pct(l.first_deferral_rate)} (${b}) ${bar(l.first_deferral_rate / 0.05, "#f59e0b")}</td>` +
        `<td>${pct(l.final_delivery_rate)} ${bar(l.final_delivery_rate, "#22c55e")}</td>` +
        `<td class="num">${l.delivered}</td><td class="num">${l.deferrals}${byClass(l.replies && l.replies.deferred)}</td><td><ul class="timeline">${tl}</ul></td></tr>`;
    }));
  $("status").textContent = "updated " + new Date().toLocaleTimeString();
}

// Deferrals by reply class, most frequent first.
function byClass(m) {
  const rows = Object.entries(m || {}).sort((x, y) => y[1] - x[1]);
  return rows.length ? `<ul class="classes">${rows.map(([c, n]) => `<li>${esc(c)}: ${n}</li>`).join("")}</ul>` : "";
}

async function lookup(q) {
  q = q.trim();
  if (!q) return;
  const rows = q.includes("@")
    ? await api("/admin/v1/queue?recipient=" + encodeURIComponent(q))
    : await api("/admin/v1/queue/" + encodeURIComponent(q)).catch((e) => { $("found").innerHTML = `<tr><td class="error">${esc(e.message)}</td></tr>`; return null; });
  if (!rows) return;
  table($("found"), ["message", "recipient", "state", "attempts", "accepted", "next attempt", "lane", "first deferral", "last reply"],
    rows.map((r) => `<tr data-message="${esc(r.message_id)}"><td>${esc(r.message_id)}</td><td>${esc(r.address)}</td><td>${esc(r.state)}</td>` +
      `<td class="num">${r.attempts}</td><td>${when(r.created_ms)}</td><td>${when(r.next_attempt_ms)}</td><td>${esc(r.lane || "–")}</td>` +
      `<td>${esc(r.first_reply || "–")}</td><td>${esc(r.last_reply || "–")}</td></tr>`));
}

$("token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  token = $("token").value.trim();
  sessionStorage.setItem("weir-token", token);
  $("login").hidden = true;
  tick();
});
$("lookup-form").addEventListener("submit", (e) => { e.preventDefault(); lookup($("lookup").value).catch(showError); });
function showError(e) { $("status").innerHTML = `<span class="error">${esc(e.message)}</span>`; }
async function tick() { try { await refresh(); } catch (e) { showError(e); } }

if (!token) $("login").hidden = false;
else {
  tick();
  if (frag.get("lookup")) { $("lookup").value = frag.get("lookup"); lookup(frag.get("lookup")).catch(showError); }
}
setInterval(() => { if (token) tick(); }, 2000);
