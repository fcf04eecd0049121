// segbridge status page: lists the series Orthanc received last, starts the
// AI analysis of one, follows every job through the bridge's event stream
// (GET /v1/events, Server-Sent Events read with fetch so that the API token
// can travel in a header), and shows a done job's preview and volumes.
// Everything on the page is built with DOM calls and textContent: patient
// names and descriptions come from outside and are never parsed as HTML.
"use strict";

(() => {
  const TOKEN_KEY = "segbridge-api-token";
  const state = {
    token: sessionStorage.getItem(TOKEN_KEY) || "",
    series: new Map(), // series id -> page series (with jobs)
    order: [],
    models: [],
    defaultModel: "",
    previews: false,
    chosen: new Map(), // series id -> model name picked
    results: new Map(), // job id + SEG instance -> {data, url} or {error}
    loading: new Set(), // result keys being loaded
    highlight: new URLSearchParams(location.search).get("series") || "",
    highlighted: false,
    streaming: false,
    reloadTimer: 0,
  };

  class AuthError extends Error {}

  const $ = (id) => document.getElementById(id);

  // el builds an element: el("td", {class: "num"}, "12", child, ...).
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) {
      if (c === undefined || c === null || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  async function api(path, opts) {
    opts = opts || {};
    const headers = Object.assign({}, opts.headers || {});
    if (state.token) headers.Authorization = "Bearer " + state.token;
    const resp = await fetch(path, Object.assign({}, opts, { headers, cache: "no-store" }));
    if (resp.status === 401) {
      askToken(state.token ? "That token was refused." : "");
      throw new AuthError("unauthorized");
    }
    return resp;
  }

  async function errorText(resp) {
    try {
      const b = await resp.json();
      if (b && b.error) return b.error;
    } catch (e) { /* not JSON */ }
    return resp.status + " " + resp.statusText;
  }

  function announce(text) {
    $("announce").textContent = text;
  }

  // Token ----------------------------------------------------------------

  function askToken(message) {
    state.token = "";
    sessionStorage.removeItem(TOKEN_KEY);
    $("token-section").hidden = false;
    $("token-error").textContent = message || "";
    $("forget-token").hidden = true;
    setConnection("Waiting for the API token", "down");
    $("token-input").focus();
  }

  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const t = $("token-input").value.trim();
    if (!t) return;
    state.token = t;
    sessionStorage.setItem(TOKEN_KEY, t);
    $("token-input").value = "";
    $("token-section").hidden = true;
    start();
  });

  $("forget-token").addEventListener("click", () => askToken(""));
  $("reload").addEventListener("click", () => loadList());

  function setConnection(text, cls) {
    const c = $("connection");
    c.textContent = text;
    c.className = "connection " + (cls || "");
  }

  // The list --------------------------------------------------------------

  async function loadList() {
    $("list-error").textContent = "";
    let resp;
    try {
      resp = await api("/v1/page/series?limit=50");
    } catch (e) {
      if (!(e instanceof AuthError)) $("list-error").textContent = "Cannot reach the bridge: " + e.message;
      return false;
    }
    if (!resp.ok) {
      $("list-error").textContent = "Cannot list the series: " + (await errorText(resp));
      return false;
    }
    const body = await resp.json();
    state.models = body.models || [];
    state.defaultModel = body.default_model || "";
    state.previews = !!body.previews;
    state.series.clear();
    state.order = [];
    for (const s of body.series) {
      state.series.set(s.series_id, s);
      state.order.push(s.series_id);
    }
    if (state.token) $("forget-token").hidden = false;
    renderAll();
    return true;
  }

  function scheduleReload() {
    clearTimeout(state.reloadTimer);
    state.reloadTimer = setTimeout(loadList, 800);
  }

  function renderAll() {
    const body = $("series-body");
    body.replaceChildren();
    for (const id of state.order) {
      for (const row of seriesRows(state.series.get(id))) body.append(row);
    }
    $("empty").hidden = state.order.length > 0;
    if (state.highlight && !state.highlighted && state.series.has(state.highlight)) {
      state.highlighted = true;
      const row = body.querySelector(`tr[data-series-id="${CSS.escape(state.highlight)}"]`);
      if (row) {
        row.scrollIntoView({ block: "center" });
        const b = row.querySelector("button");
        if (b) b.focus();
      }
    }
  }

  function renderSeries(s) {
    const body = $("series-body");
    const id = CSS.escape(s.series_id);
    const old = body.querySelectorAll(`tr[data-series-id="${id}"], tr[data-result-of="${id}"]`);
    const rows = seriesRows(s);
    if (old.length === 0) {
      for (const r of rows) body.append(r);
      return;
    }
    old[0].replaceWith(...rows);
    for (let i = 1; i < old.length; i++) old[i].remove();
  }

  // modelOf is the model a series' row shows and runs: the one picked, else
  // the default, else the first that applies.
  function modelOf(s) {
    const picked = state.chosen.get(s.series_id);
    if (picked) return picked;
    if (state.defaultModel && s.models.includes(state.defaultModel)) return state.defaultModel;
    return s.models[0] || "";
  }

  function jobOf(s) {
    const m = modelOf(s);
    const job = (s.jobs || []).find((j) => j.model === m);
    if (job) return job;
    return (s.jobs || []).length === 1 && s.models.length <= 1 ? s.jobs[0] : null;
  }

  function describe(s) {
    const desc = s.series_description || "series " + (s.series_number || "");
    return `${desc} of ${s.patient_name || s.patient_id || "an unnamed patient"}`;
  }

  function formatDate(d) {
    return /^\d{8}$/.test(d || "") ? `${d.slice(0, 4)}-${d.slice(4, 6)}-${d.slice(6)}` : d || "";
  }

  function stateCell(job) {
    const td = el("td", { class: "state-cell" });
    if (!job) {
      td.append(el("span", { class: "muted", text: "not analysed" }));
      return td;
    }
    const label = el("span", { class: "state state-" + job.state, text: job.state });
    td.append(label);
    if (job.state === "running") {
      const stage = job.stage || "starting";
      td.append(" ", el("span", { class: "stage", text: stage }), " ");
      const p = el("progress", { max: "1", value: String(job.progress || 0), "aria-label": `${stage} progress` });
      td.append(p);
    } else if (job.state === "failed" || job.state === "skipped" || job.state === "cancelled") {
      if (job.error) td.append(el("span", { class: "reason", text: job.error }));
    } else if (job.state === "done" && job.source === "orthanc") {
      td.append(" ", el("span", { class: "muted", text: "(found in Orthanc)" }));
    }
    return td;
  }

  function actionCell(s, job) {
    const td = el("td");
    const box = el("div", { class: "action" });
    if (s.models.length === 0) {
      box.append(el("span", { class: "muted", text: "no model applies" }));
      td.append(box);
      return td;
    }
    const model = modelOf(s);
    if (s.models.length > 1) {
      const id = "model-" + s.series_id;
      const sel = el("select", { id, onchange: (ev) => { state.chosen.set(s.series_id, ev.target.value); renderSeries(s); } });
      for (const m of s.models) sel.append(el("option", { value: m, selected: m === model, text: m }));
      box.append(el("label", { for: id, class: "visually-hidden", text: `Model for ${describe(s)}` }), sel);
    }
    const busy = job && (job.state === "queued" || job.state === "running");
    const again = job && job.state === "done";
    const button = el("button", {
      type: "button",
      class: again ? "secondary" : "",
      disabled: busy,
      "data-action": "analyse",
      "aria-label": `${again ? "Run AI analysis again" : "AI analysis"} of ${describe(s)}`,
      onclick: () => trigger(s, model, again),
    }, again ? "Run again" : "AI analysis");
    box.append(button);
    td.append(box);
    return td;
  }

  function linksCell(s, job) {
    const td = el("td", { class: "links" });
    td.append(el("a", { href: s.explorer_url, target: "_blank", rel: "noopener", text: "Source" }));
    if (job && job.seg_url) td.append(el("a", { href: job.seg_url, target: "_blank", rel: "noopener", text: "SEG" }));
    if (job && job.sr_url) td.append(el("a", { href: job.sr_url, target: "_blank", rel: "noopener", text: "Volumes (SR)" }));
    if (job && job.preview_url) td.append(el("a", { href: job.preview_url, target: "_blank", rel: "noopener", text: "Preview series" }));
    return td;
  }

  function seriesRows(s) {
    const job = jobOf(s);
    const st = job ? job.state : "none";
    const tr = el("tr", {
      "data-series-id": s.series_id,
      "data-state": st,
      "data-job-id": job ? job.id : null,
      class: s.series_id === state.highlight ? "highlight" : "",
    });
    tr.append(
      el("td", {}, s.patient_name || "(no name)", el("br"), el("span", { class: "muted", text: s.patient_id || "" })),
      el("td", { text: formatDate(s.study_date) }),
      el("td", {}, s.series_description || "(no description)", el("br"),
        el("span", { class: "muted", text: [s.modality, s.series_number ? "#" + s.series_number : "", s.study_description].filter(Boolean).join(" · ") })),
      el("td", { class: "num", text: String(s.instances) }),
      stateCell(job),
      actionCell(s, job),
      linksCell(s, job),
    );
    if (s.error) tr.children[5].append(el("p", { class: "error", role: "alert", text: s.error }));
    const rows = [tr];
    if (job && job.state === "done") rows.push(resultRow(s, job));
    return rows;
  }

  // A done job's result ------------------------------------------------------

  function resultKey(job) {
    return job.id + "/" + (job.seg_instance_id || "");
  }

  function resultRow(s, job) {
    const tr = el("tr", { class: "result", "data-result-of": s.series_id });
    const td = el("td", { colspan: "7" });
    tr.append(td);
    const box = el("div", { class: "result-box" });
    td.append(box);
    const key = resultKey(job);
    const r = state.results.get(key);
    if (!state.previews) {
      box.append(volumesTable(job.volumes || [], null));
      return tr;
    }
    if (!r) {
      box.append(el("p", { class: "muted", text: "Loading the preview…" }));
      loadResult(s, job);
      return tr;
    }
    if (r.error) {
      box.append(el("p", { class: "error", text: "No preview: " + r.error }));
      if (job.volumes) box.append(volumesTable(job.volumes, null));
      return tr;
    }
    if (r.url) {
      const fig = el("figure");
      const alt = `${describe(s)}: axial, coronal and sagittal planes through the centre of the segmentation, ` +
        `segments drawn in colour`;
      const img = el("img", { src: r.url, alt, "data-job-id": job.id, width: r.data.preview.width, height: r.data.preview.height });
      fig.append(img, el("figcaption", { text: "Axial · coronal · sagittal through the mask's centre (not for diagnosis)" }));
      box.append(fig);
    } else {
      box.append(el("p", { class: "muted", text: "The segmentation is empty: nothing to preview." }));
    }
    box.append(volumesTable(null, r.data));
    return tr;
  }

  function volumesTable(volumes, data) {
    const t = el("table", { class: "volumes" });
    t.append(el("caption", { text: "Segment volumes" }));
    t.append(el("thead", {}, el("tr", {},
      el("th", { scope: "col", text: "Segment" }),
      el("th", { scope: "col", text: "Voxels" }),
      el("th", { scope: "col", text: "Volume (mL)" }))));
    const body = el("tbody");
    const rows = data ? data.segments.map((s) => ({ name: s.name, colour: s.colour, voxels: s.voxels, ml: s.volume_ml }))
      : (volumes || []).map((v) => ({ name: v.name, voxels: v.voxels, ml: v.ml }));
    for (const r of rows) {
      const name = el("td");
      if (r.colour) {
        const sw = el("span", { class: "swatch", "aria-hidden": "true" });
        sw.style.backgroundColor = r.colour;
        name.append(sw);
      }
      name.append(r.name);
      body.append(el("tr", { "data-segment": r.name }, name,
        el("td", { class: "num", text: r.voxels.toLocaleString("en") }),
        el("td", { class: "num", "data-ml": String(r.ml), text: r.ml.toFixed(1) })));
    }
    t.append(body);
    return t;
  }

  async function loadResult(s, job) {
    const key = resultKey(job);
    if (state.results.has(key) || state.loading.has(key)) return;
    state.loading.add(key);
    const entry = {};
    try {
      const resp = await api(`/v1/jobs/${encodeURIComponent(job.id)}/result`);
      if (!resp.ok) throw new Error(await errorText(resp));
      entry.data = await resp.json();
      if (entry.data.preview_png) {
        const img = await api(entry.data.preview_png);
        if (!img.ok) throw new Error(await errorText(img));
        entry.url = URL.createObjectURL(await img.blob());
      }
    } catch (e) {
      entry.error = e.message;
    } finally {
      state.loading.delete(key);
    }
    if (entry.error === "unauthorized") return;
    state.results.set(key, entry);
    const cur = state.series.get(s.series_id);
    if (cur) renderSeries(cur);
  }

  // Starting a job -------------------------------------------------------

  async function trigger(s, model, force) {
    s.error = "";
    const q = new URLSearchParams();
    if (model) q.set("model", model);
    if (force) q.set("force", "true");
    let resp;
    try {
      resp = await api(`/v1/series/${encodeURIComponent(s.series_id)}/segment?${q}`, { method: "POST" });
    } catch (e) {
      if (!(e instanceof AuthError)) { s.error = "Cannot reach the bridge: " + e.message; renderSeries(s); }
      return;
    }
    if (!resp.ok) {
      s.error = await errorText(resp);
      renderSeries(s);
      announce(`AI analysis of ${describe(s)} refused: ${s.error}`);
      return;
    }
    const job = await resp.json();
    updateJob(job);
  }

  // stamp is a status's updated_at in microseconds: the trigger's answer and
  // the event stream race, and an older status must not replace a newer one.
  function stamp(t) {
    const m = /^(.*T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$/.exec(t || "");
    if (!m) return 0;
    const frac = (m[2] || ".0").slice(1).padEnd(6, "0").slice(0, 6);
    return Date.parse(m[1] + m[3]) * 1000 + Number(frac);
  }

  // updateJob puts a job's new status in its series and redraws the row,
  // announcing a change of state to screen readers.
  function updateJob(job) {
    const s = state.series.get(job.series_id);
    if (!s) {
      scheduleReload();
      return;
    }
    s.jobs = s.jobs || [];
    const i = s.jobs.findIndex((j) => j.id === job.id);
    if (i >= 0 && stamp(job.updated_at) < stamp(s.jobs[i].updated_at)) return;
    const before = i >= 0 ? s.jobs[i].state : "none";
    if (i >= 0) s.jobs[i] = job; else s.jobs.push(job);
    renderSeries(s);
    if (before !== job.state) {
      announce(`${describe(s)}: ${job.state}${job.error ? " — " + job.error : ""}`);
    }
  }

  // The event stream --------------------------------------------------------

  async function follow() {
    if (state.streaming) return;
    state.streaming = true;
    let first = true;
    for (;;) {
      try {
        const resp = await api("/v1/events", { headers: { Accept: "text/event-stream" } });
        if (!resp.ok || !resp.body) throw new Error(await errorText(resp));
        const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let cut;
          while ((cut = buf.indexOf("\n\n")) >= 0) {
            const block = buf.slice(0, cut);
            buf = buf.slice(cut + 2);
            let event = "message";
            const data = [];
            for (const line of block.split("\n")) {
              if (line.startsWith("event:")) event = line.slice(6).trim();
              else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
            }
            if (event === "ready") {
              setConnection("Live", "live");
              // Changes made while the stream was down are read again.
              if (!first) loadList();
              first = false;
            } else if (event === "job" && data.length) {
              updateJob(JSON.parse(data.join("\n")));
            }
          }
        }
      } catch (e) {
        if (e instanceof AuthError) { state.streaming = false; return; }
      }
      setConnection("Reconnecting…", "down");
      await new Promise((r) => setTimeout(r, 2000));
      first = false;
    }
  }

  async function start() {
    while (!(await loadList())) {
      if (!state.token && !$("token-section").hidden) return; // waiting for the token
      setConnection("Cannot reach the bridge; retrying…", "down");
      await new Promise((r) => setTimeout(r, 3000));
    }
    follow();
  }

  start();
})();
