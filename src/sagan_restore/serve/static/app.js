// The page of `sagan-restore serve`: uploads each image as its own job, polls the job's progress, and
// shows the result against the input in a zoomable before/after view. Plain JS, no build step, no CDN.
"use strict";

const $ = (id) => document.getElementById(id);
const POLL_MS = 300;
let models = [];
let limits = {};
let shown = null; // the job in the viewer

function showMessage(text) {
  $("message").textContent = text;
  $("message").hidden = !text;
}

async function errorText(response) {
  try {
    return (await response.json()).error || response.statusText;
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}

// ---- settings ----

async function loadModels() {
  const response = await fetch("/api/models");
  const body = await response.json();
  models = body.models;
  limits = body.limits;
  for (const m of models) {
    const option = document.createElement("option");
    option.value = m.name;
    option.textContent = m.scale > 1 ? `${m.name} (x${m.scale})` : m.name;
    $("model").append(option);
  }
  $("limits").textContent = `Up to ${limits.max_upload_mb} MB per file and ${limits.max_megapixels} megapixels `
    + "per result.";
  modelChanged();
}

function currentModel() {
  return models.find((m) => m.name === $("model").value);
}

function modelChanged() {
  const m = currentModel();
  $("model-summary").textContent = m ? m.summary : "";
  $("realism-row").hidden = !(m && m.has_realism);
  if (m && m.has_realism) {
    $("realism").value = m.default_realism;
    $("realism-value").textContent = Number(m.default_realism).toFixed(2);
  }
  $("strength-row").hidden = !(m && m.has_strength);
}

// ---- jobs ----

function addRow(file) {
  const row = document.createElement("li");
  row.innerHTML = '<span class="name"></span><progress max="1" value="0"></progress><span class="status"></span>'
    + '<a class="button download" hidden download>Download</a><button type="button" class="remove">Remove</button>';
  row.querySelector(".name").textContent = file.name;
  $("jobs").append(row);
  return row;
}

function setStatus(row, text, progress) {
  row.querySelector(".status").textContent = text;
  if (progress !== undefined) row.querySelector("progress").value = progress;
}

async function submit(file) {
  const row = addRow(file);
  const model = currentModel();
  let removed = false;
  row.querySelector(".remove").addEventListener("click", () => { removed = true; row.remove(); });
  if (file.size > limits.max_upload_mb * 1e6) {
    fail(row, `${file.name}: the file is larger than this server's limit of ${limits.max_upload_mb} MB`);
    return;
  }
  const query = new URLSearchParams({ model: model.name, name: file.name });
  if (model.has_realism) query.set("realism", $("realism").value);
  if (model.has_strength) query.set("strength", $("strength").value);
  setStatus(row, "uploading");
  let response;
  for (;;) {
    try {
      response = await fetch(`/api/jobs?${query}`, {
        method: "POST", headers: { "Content-Type": "application/octet-stream" }, body: file,
      });
    } catch (err) {
      fail(row, `${file.name}: upload failed (${err.message}); is the server still running?`);
      return;
    }
    if (response.status !== 503 || removed) break;
    setStatus(row, "server busy, waiting for a place in the queue");
    await new Promise((r) => setTimeout(r, 1000 * Number(response.headers.get("Retry-After") || 5)));
  }
  if (!response.ok) {
    fail(row, await errorText(response));
    return;
  }
  const job = await response.json();
  row.querySelector(".remove").addEventListener("click", () => fetch(`/api/jobs/${job.id}`, { method: "DELETE" }));
  await follow(row, job, () => removed);
}

function fail(row, text) {
  row.classList.add("failed");
  setStatus(row, text, 0);
  showMessage(text);
}

async function follow(row, job, isRemoved) {
  while (job.state === "queued" || job.state === "running") {
    if (job.state === "queued") {
      setStatus(row, job.position > 0 ? `waiting (${job.position} before it)` : "waiting", 0);
    } else {
      setStatus(row, `enhancing: ${Math.round(100 * job.progress)}%`, job.progress);
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
    if (isRemoved()) return;
    const response = await fetch(`/api/jobs/${job.id}`);
    if (!response.ok) {
      fail(row, await errorText(response));
      return;
    }
    job = await response.json();
  }
  if (job.state !== "done") {
    fail(row, job.error || `the job was ${job.state}`);
    return;
  }
  const size = `${job.width * job.scale}x${job.height * job.scale}`;
  setStatus(row, `done in ${job.seconds.toFixed(1)} s: ${size}`, 1);
  const link = row.querySelector(".download");
  link.href = job.result;
  link.setAttribute("download", job.download_name);
  link.hidden = false;
  row.addEventListener("click", (event) => { if (event.target.tagName !== "A" && event.target.tagName !== "BUTTON") show(row, job); });
  if (!shown) show(row, job);
}

function submitAll(files) {
  showMessage("");
  for (const file of files) submit(file);
}

// ---- before/after view: both images at the result's size, one transform for zoom and pan ----

const view = { zoom: 1, x: 0, y: 0, split: 0.5, width: 0, height: 0 };

function show(row, job) {
  for (const other of document.querySelectorAll("#jobs li")) other.classList.remove("selected");
  row.classList.add("selected");
  shown = job;
  $("viewer").hidden = false;
  $("viewer-title").textContent = `${job.download_name} (${job.width * job.scale}x${job.height * job.scale})`;
  $("download").href = job.result;
  $("download").setAttribute("download", job.download_name);
  view.width = job.width * job.scale;
  view.height = job.height * job.scale;
  for (const img of [$("before"), $("after")]) {
    img.style.width = `${view.width}px`;
    img.style.height = `${view.height}px`;
  }
  $("before").src = job.before;
  $("after").src = job.after;
  fit();
}

function render() {
  const transform = `translate(${view.x}px, ${view.y}px) scale(${view.zoom})`;
  $("before").style.transform = transform;
  $("after").style.transform = transform;
  const percent = 100 * view.split;
  $("after-clip").style.clipPath = `inset(0 0 0 ${percent}%)`;
  $("divider").style.left = `${percent}%`;
  $("split").value = Math.round(percent);
  $("zoom-value").textContent = `${Math.round(100 * view.zoom)}%`;
  $("stage").classList.toggle("zoomed", view.zoom > 1);
}

function fit() {
  const stage = $("stage").getBoundingClientRect();
  view.zoom = Math.min(stage.width / view.width, stage.height / view.height, 1);
  view.x = (stage.width - view.width * view.zoom) / 2;
  view.y = (stage.height - view.height * view.zoom) / 2;
  render();
}

function zoomAt(factor, sx, sy) {
  const zoom = Math.min(32, Math.max(0.05, view.zoom * factor));
  view.x = sx - (sx - view.x) * (zoom / view.zoom);
  view.y = sy - (sy - view.y) * (zoom / view.zoom);
  view.zoom = zoom;
  render();
}

function setupViewer() {
  const stage = $("stage");
  let drag = null;
  stage.addEventListener("wheel", (event) => {
    event.preventDefault();
    const box = stage.getBoundingClientRect();
    zoomAt(Math.exp(-event.deltaY * 0.0015), event.clientX - box.left, event.clientY - box.top);
  }, { passive: false });
  stage.addEventListener("pointerdown", (event) => {
    drag = { splitting: event.target === $("divider"), x: event.clientX, y: event.clientY };
    stage.setPointerCapture(event.pointerId);
    stage.classList.toggle("panning", !drag.splitting);
  });
  stage.addEventListener("pointermove", (event) => {
    if (!drag) return;
    if (drag.splitting) {
      const box = stage.getBoundingClientRect();
      view.split = Math.min(1, Math.max(0, (event.clientX - box.left) / box.width));
    } else {
      view.x += event.clientX - drag.x;
      view.y += event.clientY - drag.y;
    }
    drag.x = event.clientX;
    drag.y = event.clientY;
    render();
  });
  stage.addEventListener("pointerup", () => { drag = null; stage.classList.remove("panning"); });
  $("split").addEventListener("input", () => { view.split = $("split").value / 100; render(); });
  $("fit").addEventListener("click", fit);
  $("actual").addEventListener("click", () => {
    const box = stage.getBoundingClientRect();
    zoomAt(1 / view.zoom, box.width / 2, box.height / 2);
  });
}

// ---- start ----

function setupDrop() {
  const drop = $("drop");
  $("files").addEventListener("change", () => { submitAll($("files").files); $("files").value = ""; });
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    submitAll(event.dataTransfer.files);
  });
  $("model").addEventListener("change", modelChanged);
  $("realism").addEventListener("input", () => {
    $("realism-value").textContent = Number($("realism").value).toFixed(2);
  });
  $("strength").addEventListener("input", () => {
    $("strength-value").textContent = Number($("strength").value).toFixed(2);
  });
}

setupDrop();
setupViewer();
loadModels().catch((err) => showMessage(`could not reach the server: ${err.message}`));
