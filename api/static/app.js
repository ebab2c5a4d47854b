"use strict";
// The page is an ordinary client of the API: it posts what is drawn (or chosen) to
// POST predict/mnist and shows the answer. Every URL is relative, so the page works
// wherever the API is mounted, and nothing is fetched from any other host.

const DEBOUNCE_MS = 250; // wait this long after a stroke ends: a "4" or "7" takes two strokes
const POLL_FIRST_MS = 150;
const POLL_MAX_MS = 1000;
const POLL_GIVE_UP_MS = 60_000;
const SERVICE_REFRESH_MS = 30_000;

const el = (id) => document.querySelector(`[data-testid="${id}"]`);
const ui = {
  pad: el("pad"),
  dropzone: el("dropzone"),
  undo: el("undo"),
  clear: el("clear"),
  file: el("file"),
  async: el("async"),
  result: el("result"),
  error: el("error"),
  job: el("job"),
  jobId: el("job-id"),
  jobStatus: el("job-status"),
  jobTrail: el("job-trail"),
  prediction: el("prediction"),
  confidence: el("confidence"),
  top3: el("top3"),
  seen: el("seen"),
  inputImage: el("input-image"),
  source: el("source"),
  modelVersion: el("model-version"),
  workers: el("workers"),
};

// ---- Drawing --------------------------------------------------------------------------

const ctx = ui.pad.getContext("2d");
const strokes = []; // each stroke is a list of [x, y] in canvas pixels, kept for undo
let stroke = null; // the stroke under the pointer
let activePointer = null; // one pointer at a time: a resting palm must not draw too

function setBrush() {
  // About 1/14 of the pad: relative to a digit filling the pad, that is MNIST's pen.
  ctx.lineWidth = ui.pad.width / 14;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.strokeStyle = ctx.fillStyle = "#111";
}

function drawDot([x, y]) {
  ctx.beginPath();
  ctx.arc(x, y, ctx.lineWidth / 2, 0, 2 * Math.PI);
  ctx.fill();
}

function drawSegment([x0, y0], [x1, y1]) {
  ctx.beginPath();
  ctx.moveTo(x0, y0);
  ctx.lineTo(x1, y1);
  ctx.stroke();
}

function redraw() {
  // The canvas stays transparent under the ink: the service reads transparency as
  // background, so only the strokes count.
  ctx.clearRect(0, 0, ui.pad.width, ui.pad.height);
  for (const points of strokes) {
    drawDot(points[0]);
    for (let i = 1; i < points.length; i++) drawSegment(points[i - 1], points[i]);
  }
}

function toCanvas(event) {
  // The canvas is scaled by CSS and has a border: map from the page to its own pixels.
  const box = ui.pad.getBoundingClientRect();
  const scaleX = ui.pad.width / ui.pad.clientWidth;
  const scaleY = ui.pad.height / ui.pad.clientHeight;
  return [
    (event.clientX - box.left - ui.pad.clientLeft) * scaleX,
    (event.clientY - box.top - ui.pad.clientTop) * scaleY,
  ];
}

ui.pad.addEventListener("pointerdown", (event) => {
  if (activePointer !== null || (event.pointerType === "mouse" && event.button !== 0)) return;
  event.preventDefault();
  activePointer = event.pointerId;
  ui.pad.setPointerCapture(event.pointerId);
  clearTimeout(debounceTimer); // still drawing: the answer waits for the whole digit
  stroke = [toCanvas(event)];
  strokes.push(stroke);
  drawDot(stroke[0]);
  updateButtons();
});

ui.pad.addEventListener("pointermove", (event) => {
  if (event.pointerId !== activePointer) return;
  // Coalesced events keep fast strokes smooth when the browser batches moves per frame.
  const batch = event.getCoalescedEvents?.() ?? [];
  for (const move of batch.length ? batch : [event]) {
    const point = toCanvas(move);
    drawSegment(stroke.at(-1), point);
    stroke.push(point);
  }
});

function endStroke(event) {
  if (event.pointerId !== activePointer) return;
  activePointer = null;
  stroke = null;
  schedulePrediction();
}
ui.pad.addEventListener("pointerup", endStroke);
ui.pad.addEventListener("pointercancel", endStroke);

function undo() {
  if (!strokes.length || activePointer !== null) return;
  strokes.pop();
  redraw();
  updateButtons();
  if (strokes.length) schedulePrediction();
  else resetAnswer();
}

function clearAll() {
  strokes.length = 0;
  stroke = null;
  activePointer = null;
  redraw();
  updateButtons();
  resetAnswer();
}

function updateButtons() {
  ui.undo.disabled = strokes.length === 0;
}

ui.undo.addEventListener("click", undo);
ui.clear.addEventListener("click", clearAll);
document.addEventListener("keydown", (event) => {
  if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "z") {
    event.preventDefault();
    undo();
  } else if (event.key === "Escape") {
    clearAll();
  }
});

setBrush();
updateButtons();

// ---- Images from files ----------------------------------------------------------------

function useFile(file) {
  // A file replaces the drawing: the answer on show must be about one thing.
  strokes.length = 0;
  redraw();
  updateButtons();
  submit({ blob: file, name: file.name || "upload", source: `From the file ${file.name}` });
}

ui.file.addEventListener("change", () => {
  const [file] = ui.file.files;
  if (file) useFile(file);
  ui.file.value = ""; // so choosing the same file again still fires "change"
});

// Dropping a file anywhere else would make the browser leave the page to open it.
for (const type of ["dragover", "drop"]) {
  document.addEventListener(type, (event) => event.preventDefault());
}
let dragDepth = 0; // enter/leave also fire for children; count to know when it truly left
ui.dropzone.addEventListener("dragenter", () => {
  dragDepth++;
  ui.dropzone.classList.add("dragging");
});
ui.dropzone.addEventListener("dragleave", () => {
  dragDepth = Math.max(0, dragDepth - 1);
  if (!dragDepth) ui.dropzone.classList.remove("dragging");
});
ui.dropzone.addEventListener("drop", (event) => {
  dragDepth = 0;
  ui.dropzone.classList.remove("dragging");
  const [file] = event.dataTransfer?.files ?? [];
  if (file) useFile(file);
});

// ---- Asking the service ---------------------------------------------------------------

let debounceTimer = 0;
let generation = 0; // bumps on every new request: late answers to old ones are dropped
let controller = null;
let lastInput = null; // resent when the async switch flips, to show the other mode

function schedulePrediction() {
  clearTimeout(debounceTimer);
  debounceTimer = setTimeout(predictDrawing, DEBOUNCE_MS);
}

async function predictDrawing() {
  if (!strokes.length) return;
  const blob = await new Promise((resolve) => ui.pad.toBlob(resolve, "image/png"));
  if (blob) submit({ blob, name: "drawing.png", source: "From your drawing" });
}

ui.async.addEventListener("change", () => {
  if (lastInput) submit(lastInput);
});

function cancelPending() {
  clearTimeout(debounceTimer);
  generation++;
  controller?.abort();
  controller = null;
}

async function readJson(response) {
  try {
    return await response.json();
  } catch {
    return {};
  }
}

const sleep = (ms, signal) =>
  new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener(
      "abort",
      () => {
        clearTimeout(timer);
        reject(new DOMException("aborted", "AbortError"));
      },
      { once: true },
    );
  });

async function submit(input) {
  cancelPending();
  lastInput = input;
  const mine = generation;
  controller = new AbortController();
  const { signal } = controller;
  const useAsync = ui.async.checked;
  const started = performance.now();
  setBusy(true);
  hideError();
  ui.job.hidden = true;
  ui.source.textContent = input.source;

  const form = new FormData();
  form.append("file", input.blob, input.name);
  const query = new URLSearchParams({ include_input: "true" });
  if (useAsync) query.set("async", "true");
  try {
    const response = await fetch(`predict/mnist?${query}`, { method: "POST", body: form, signal });
    const body = await readJson(response);
    if (mine !== generation) return;
    if (response.status === 200) {
      showAnswer(body, started, input.source);
    } else if (response.status === 202 || (response.status === 504 && body.job_id)) {
      // A sync request that ran out of time left a job behind: follow it instead of failing.
      if (response.status === 504) showError("This is taking longer than usual; following the job…");
      await follow(body.job_id, mine, signal, started, input.source);
    } else {
      if (response.status === 503) refreshService();
      showError(messageFor(response, body));
      resetPrediction();
    }
  } catch (error) {
    if (error.name === "AbortError" || mine !== generation) return;
    showError("Could not reach the service. Check the connection and try again.");
    resetPrediction();
  } finally {
    if (mine === generation) setBusy(false);
  }
}

async function follow(jobId, mine, signal, started, source) {
  const seen = [];
  const show = (status) => {
    if (seen.at(-1) !== status) seen.push(status);
    ui.job.hidden = false;
    ui.jobId.textContent = jobId.slice(0, 8);
    ui.jobId.title = jobId;
    ui.jobStatus.textContent = status;
    ui.jobStatus.dataset.status = status;
    ui.jobTrail.textContent = seen.length > 1 ? `(${seen.join(" → ")})` : "";
  };
  show("queued");
  const url = `jobs/${encodeURIComponent(jobId)}`;
  const giveUpAt = performance.now() + POLL_GIVE_UP_MS;
  let delay = POLL_FIRST_MS;
  while (performance.now() < giveUpAt) {
    await sleep(delay, signal);
    delay = Math.min(delay * 1.5, POLL_MAX_MS);
    const response = await fetch(url, { signal, cache: "no-store" });
    const body = await readJson(response);
    if (mine !== generation) return;
    if (response.status === 503) {
      // The queue is briefly unreachable; the job is still there, so keep asking.
      delay = Math.max(delay, 1000 * (Number(response.headers.get("Retry-After")) || 1));
      continue;
    }
    if (!response.ok) {
      showError(response.status === 404 ? "The job was not found (it may have expired)." : messageFor(response, body));
      resetPrediction();
      return;
    }
    show(body.status);
    if (body.status === "succeeded" && body.result) {
      hideError();
      showAnswer(body.result, started, source);
      return;
    }
    if (body.status === "failed") {
      showError(body.error?.detail || "The job failed.");
      resetPrediction();
      return;
    }
  }
  showError("Timed out: the job is still not done. Try again in a moment.");
}

function messageFor(response, body) {
  // The service's own messages are written for people; fall back on ours if it sent none.
  const detail = typeof body?.detail === "string" ? body.detail : "";
  switch (response.status) {
    case 503: {
      const wait = Number(response.headers.get("Retry-After"));
      const when = wait ? `in ${wait} s` : "shortly";
      return `The service is busy. Try again ${when}.` + (detail ? ` (${detail})` : "");
    }
    case 504:
      return "Timed out waiting for the answer. Try again.";
    case 400:
      return detail || "That file could not be read as an image.";
    case 413:
      return detail || "That file is too large.";
    case 415:
      return detail || "Only PNG and JPEG images are accepted.";
    case 422:
      return detail || "No digit found in the image.";
    default:
      return detail || `Unexpected answer from the service (HTTP ${response.status}).`;
  }
}

// ---- Showing answers ------------------------------------------------------------------

const percent = (p) => (p > 0 && p < 0.001 ? "<0.1%" : `${(p * 100).toFixed(1)}%`);

function showAnswer(answer, started, source) {
  ui.prediction.textContent = answer.prediction;
  ui.confidence.textContent = percent(answer.confidence);
  ui.top3.replaceChildren(
    ...answer.top3.map(({ digit, probability }) => {
      const item = document.createElement("li");
      const name = document.createElement("span");
      name.textContent = digit;
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.setAttribute("aria-hidden", "true"); // the percentage beside it says the same
      const fill = document.createElement("span");
      fill.style.width = `${Math.round(probability * 100)}%`;
      bar.append(fill);
      const value = document.createElement("span");
      value.className = "pct";
      value.textContent = percent(probability);
      item.append(name, bar, value);
      return item;
    }),
  );
  if (answer.input_image) {
    ui.inputImage.src = answer.input_image;
    ui.seen.hidden = false;
  } else {
    ui.seen.hidden = true;
  }
  const ms = Math.round(performance.now() - started);
  ui.source.textContent = `${source}: answered by ${answer.worker} in ${ms} ms.`;
  if (answer.model_version) noteModelVersion(answer.model_version);
}

function resetPrediction() {
  ui.prediction.textContent = "–";
  ui.confidence.textContent = "–";
  ui.top3.replaceChildren();
  ui.seen.hidden = true;
  ui.inputImage.removeAttribute("src");
}

function resetAnswer() {
  cancelPending();
  lastInput = null;
  setBusy(false);
  hideError();
  ui.job.hidden = true;
  ui.source.textContent = "";
  resetPrediction();
}

function showError(message) {
  ui.error.textContent = message;
  ui.error.hidden = false;
}

function hideError() {
  ui.error.hidden = true;
  ui.error.textContent = "";
}

function setBusy(busy) {
  ui.result.setAttribute("aria-busy", String(busy));
}

// ---- Service status -------------------------------------------------------------------

let modelFromService = false; // /model (or /ready) outranks what a prediction reported

function noteModelVersion(version, authoritative = false) {
  if (modelFromService && !authoritative) return;
  modelFromService ||= authoritative;
  ui.modelVersion.textContent = version;
}

async function getJson(url) {
  const response = await fetch(url, { cache: "no-store" });
  return { status: response.status, body: await readJson(response) };
}

async function refreshService() {
  // Both endpoints may be missing on older servers (404): that reads as "unknown".
  const [ready, model] = await Promise.allSettled([getJson("ready"), getJson("model")]);
  const readyAnswer = ready.status === "fulfilled" ? ready.value : null;
  const modelAnswer = model.status === "fulfilled" ? model.value : null;

  let state = "unknown";
  let text = "unknown";
  let title = "";
  if (readyAnswer?.status === 200 && readyAnswer.body.status === "ready") {
    const workers = Array.isArray(readyAnswer.body.workers) ? readyAnswer.body.workers : [];
    // Older servers send no count: one entry per worker then, so the list length stands in.
    const processes = Number.isInteger(readyAnswer.body.processes)
      ? readyAnswer.body.processes
      : workers.length;
    state = "ready";
    text = processes ? `ready, ${processes} worker process${processes === 1 ? "" : "es"}` : "ready";
    title = workers.join(", ");
  } else if (readyAnswer?.status === 503) {
    state = "down";
    text = "not ready";
    title = readyAnswer.body.detail || "";
    if (title) text += `: ${title}`;
  }
  ui.workers.textContent = text;
  ui.workers.dataset.state = state;
  ui.workers.title = title;

  if (modelAnswer?.status === 200 && modelAnswer.body.version) {
    const info = modelAnswer.body;
    const accuracy = typeof info.test_accuracy === "number" ? `, test accuracy ${percent(info.test_accuracy)}` : "";
    // During a rollout or a canary the processes serve two versions: name the other one.
    const others = (Array.isArray(info.versions) ? info.versions : [])
      .filter((v) => v && v.version && v.version !== info.version)
      .map((v) => (typeof v.canary_percent === "number" ? `${v.version} (canary ${v.canary_percent}%)` : v.version));
    const also = others.length ? ` · also serving ${others.join(", ")}` : "";
    noteModelVersion(`${info.version}${accuracy}${also}`, true);
    ui.modelVersion.title = [info.pipeline, info.trained_at && `trained ${info.trained_at}`]
      .filter(Boolean)
      .join("; ");
  } else if (readyAnswer?.body?.model_version) {
    noteModelVersion(readyAnswer.body.model_version, true);
  }
}

refreshService();
setInterval(refreshService, SERVICE_REFRESH_MS);
