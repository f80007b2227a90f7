// The podcast search page: talks to the app's JSON API, one level up
// from /assets/ (../api/search?q=..., ../api/podcasts, ../api/status).
"use strict";

const api = (path) =>
  fetch(new URL("../api/" + path, document.baseURI)).then(async (r) => {
    const body = await r.json();
    if (!r.ok) throw new Error(body.error || r.statusText);
    return body;
  });

const el = (tag, text, cls) => {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
};

const clock = (seconds) => {
  const s = Math.floor(seconds);
  return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
};

async function search(query) {
  const summary = document.getElementById("summary");
  const list = document.getElementById("results");
  list.replaceChildren();
  summary.textContent = "Searching…";
  try {
    const results = await api("search?q=" + encodeURIComponent(query));
    summary.textContent = results.length === 0
      ? `No episode says “${query}”.`
      : `${results.length} episode${results.length === 1 ? "" : "s"} for “${query}”`;
    for (const r of results) {
      const item = el("li", undefined, "result");
      item.append(el("h3", r.title), el("p", `${r.podcast} · at ${clock(r.at)}`, "meta"), el("blockquote", r.text));
      list.append(item);
    }
  } catch (e) {
    summary.textContent = "Search failed: " + e.message;
  }
}

async function podcasts() {
  const list = document.getElementById("podcasts");
  try {
    for (const p of await api("podcasts")) {
      const item = el("li");
      item.append(el("strong", p.title), ` with ${p.host}: ${p.description} (${p.episodes} episodes)`);
      list.append(item);
    }
    const s = await api("status");
    document.getElementById("status").textContent = s.index
      ? `${s.transcribed} episodes transcribed; ${s.index.terms} terms indexed.`
      : `${s.transcribed} episodes transcribed; the index is not built yet (run refresh_index).`;
  } catch (e) {
    list.append(el("li", "Could not load the podcasts: " + e.message));
  }
}

document.getElementById("search").addEventListener("submit", (event) => {
  event.preventDefault();
  const query = document.getElementById("q").value.trim();
  const url = new URL(location.href);
  url.searchParams.set("q", query);
  history.replaceState(null, "", url);
  search(query);
});

const initial = new URLSearchParams(location.search).get("q");
if (initial) {
  document.getElementById("q").value = initial;
  search(initial);
}
podcasts();
