// Translation page. It calls only the service's public HTTP API
// (GET /limits, GET /ready, POST /translate), exactly as any other client does.
"use strict";

const READY_POLL_MS = 3000;
const COPIED_FEEDBACK_MS = 1500;
const CELL_PX = 22;
const LABEL_GAP_PX = 6;
const LABEL_HEIGHT_PX = 16;
const SOURCE_LABEL_ANGLE_DEG = 60; // Hindi labels slant up and to the right, readable and compact
const LABEL_FONT = '13px "Noto Sans Devanagari", "Nirmala UI", "Mangal", "Lohit Devanagari", sans-serif';
const SVG_NS = "http://www.w3.org/2000/svg";
const NO_ATTENTION_TITLE = "The server's inference engine returns no attention maps.";

const page = {
  source: document.getElementById("source"),
  counter: document.getElementById("counter"),
  translate: document.getElementById("translate"),
  status: document.getElementById("status"),
  beamSize: document.getElementById("beam-size"),
  alternativesCount: document.getElementById("alternatives-count"),
  showAttention: document.getElementById("show-attention"),
  attentionNote: document.getElementById("attention-note"),
  attentionLayer: document.getElementById("attention-layer"),
  apiKey: document.getElementById("api-key"),
  options: document.getElementById("options"),
  result: document.getElementById("result"),
  copy: document.getElementById("copy"),
  error: document.getElementById("error"),
  details: document.getElementById("details"),
  alternativesSection: document.getElementById("alternatives-section"),
  alternatives: document.getElementById("alternatives"),
  attentionSection: document.getElementById("attention-section"),
  attention: document.getElementById("attention"),
};

const COPY_LABEL = page.copy.innerHTML;

let limits = null;
let inFlight = null;

// An API failure: `status` is the HTTP status, or 0 when the server could not be reached.
class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

// Send a request relative to the page's URL and return the decoded JSON body.
async function callApi(path, options = {}) {
  let response;
  try {
    response = await fetch(new URL(path, document.baseURI), options);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(
      `Could not reach the translation service at ${location.origin} (${error.message}). ` +
        "Check that the server is running, then try again.",
      0,
    );
  }

  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null; // a proxy's HTML error page, for example
  }
  if (!response.ok) {
    const message =
      body && typeof body.error === "string"
        ? body.error
        : `${response.status} ${response.statusText || "error"} from ${path}`;
    throw new ApiError(message, response.status);
  }
  return body;
}

function describeError(error) {
  if (error.status === 0) return error.message;
  if (error.status === 401 || error.status === 403) {
    return `Not authorized (HTTP ${error.status}): ${error.message}. Enter the API key under Options.`;
  }
  if (error.status === 413 || error.status === 422) {
    return `The request was rejected (HTTP ${error.status}): ${error.message}`;
  }
  if (error.status >= 500) {
    return `The service is unavailable (HTTP ${error.status}): ${error.message}`;
  }
  return `The request failed (HTTP ${error.status}): ${error.message}`;
}

// --- Limits, readiness and the character counter ---

function countCharacters(text) {
  // The server counts Unicode code points, not UTF-16 units.
  return Array.from(text).length;
}

function updateCounter() {
  const count = countCharacters(page.source.value);
  const max = limits ? limits.max_text_chars : null;
  page.counter.classList.toggle("over", max !== null && count > max);
  if (max === null) {
    page.counter.textContent = `${count} characters`;
  } else if (count > max) {
    page.counter.textContent = `${count} / ${max} characters: ${count - max} over the limit`;
  } else {
    page.counter.textContent = `${count} / ${max} characters`;
  }
}

// /limits reports decoder_layers as null while the model loads, and for a loaded model
// when the engine returns no attention maps (CTranslate2), so only the latter disables them.
function applyLimits(newLimits, modelReady = false) {
  limits = newLimits;
  page.beamSize.max = limits.max_beam_size;
  page.beamSize.placeholder = `server default (${limits.default_beam_size})`;
  page.alternativesCount.max = limits.max_alternatives;

  const selected = page.attentionLayer.value;
  page.attentionLayer.replaceChildren(new Option("last decoder layer", ""));
  const layers = limits.decoder_layers;
  if (layers) {
    for (let index = 0; index < layers; index += 1) {
      page.attentionLayer.append(new Option(`layer ${index + 1} of ${layers}`, String(index)));
    }
    page.attentionLayer.value = selected;
  }
  if (modelReady) setAttentionAvailable(Boolean(layers));
  updateCounter();
}

function attentionAvailable() {
  return Boolean(limits && limits.decoder_layers);
}

function setAttentionAvailable(available) {
  if (!available) page.showAttention.checked = false;
  page.showAttention.disabled = !available;
  page.showAttention.title = available ? "" : NO_ATTENTION_TITLE;
  page.attentionNote.hidden = available;
  page.attentionLayer.disabled = !page.showAttention.checked;
}

async function loadLimits(modelReady = false) {
  try {
    applyLimits(await callApi("limits"), modelReady);
  } catch (error) {
    setStatus(`Could not read the service's limits: ${describeError(error)}`, true);
  }
}

function setStatus(message, isError = false) {
  page.status.textContent = message;
  page.status.classList.toggle("error", isError);
}

async function watchReadiness() {
  try {
    await callApi("ready");
    await loadLimits(true); // the decoder's layer count is known once the model is loaded
    setStatus(`Ready. Up to ${limits.max_text_chars} characters per text.`);
  } catch (error) {
    if (error.status === 503) {
      setStatus(`The model is not ready yet: ${error.message}. Checking again…`);
    } else {
      setStatus(describeError(error), true);
    }
    setTimeout(watchReadiness, READY_POLL_MS);
  }
}

// --- Translation ---

function readInteger(input) {
  const value = input.value.trim();
  return value === "" ? null : Number(value);
}

function buildRequest() {
  const body = { text: page.source.value };
  const beamSize = readInteger(page.beamSize);
  if (beamSize !== null) body.beam_size = beamSize;
  const alternatives = readInteger(page.alternativesCount);
  if (alternatives) body.alternatives = alternatives;
  // Without a layer count the server rejects return_attention with 501 (or 503 while the
  // model loads), so the page does not request attention maps then.
  if (page.showAttention.checked && attentionAvailable()) {
    body.return_attention = true;
    if (page.attentionLayer.value !== "") body.attention_layer = Number(page.attentionLayer.value);
  }
  return body;
}

async function translate() {
  if (inFlight) inFlight.abort();
  const controller = new AbortController();
  inFlight = controller;

  const headers = { "Content-Type": "application/json" };
  const apiKey = page.apiKey.value.trim();
  if (apiKey) headers["X-API-Key"] = apiKey;

  showError(null);
  page.translate.disabled = true;
  page.details.textContent = "Translating…";
  try {
    const response = await callApi("translate", {
      method: "POST",
      headers,
      body: JSON.stringify(buildRequest()),
      signal: controller.signal,
    });
    showTranslation(response);
  } catch (error) {
    if (error.name === "AbortError") return;
    clearTranslation();
    showError(describeError(error));
    if (error.status === 401 || error.status === 403) page.options.open = true;
  } finally {
    if (inFlight === controller) {
      inFlight = null;
      page.translate.disabled = false;
    }
  }
}

function showError(message) {
  page.error.hidden = message === null;
  page.error.textContent = message || "";
}

function clearTranslation() {
  page.result.textContent = "";
  page.details.textContent = "";
  page.copy.disabled = true;
  page.alternativesSection.hidden = true;
  page.alternatives.replaceChildren();
  page.attentionSection.hidden = true;
  page.attention.replaceChildren();
}

function formatScore(score) {
  return `score ${score.toFixed(3)}`;
}

function showTranslation(response) {
  clearTranslation();
  page.result.textContent = response.translation;
  page.copy.disabled = response.translation === "";
  page.details.textContent = `${formatScore(response.score)} · ${response.time_ms} ms`;

  const alternatives = response.alternatives || [];
  const scores = response.alternative_scores || [];
  for (const [index, text] of alternatives.entries()) {
    const item = document.createElement("li");
    item.lang = "en";
    item.append(text);
    if (index < scores.length) {
      const score = document.createElement("span");
      score.className = "score";
      score.textContent = formatScore(scores[index]);
      item.append(score);
    }
    page.alternatives.append(item);
  }
  page.alternativesSection.hidden = alternatives.length === 0;

  const maps = response.attention || [];
  for (const map of maps) page.attention.append(drawAttention(map));
  page.attentionSection.hidden = maps.length === 0;
}

// --- Attention map: an SVG heatmap, English tokens as rows and Hindi tokens as columns ---

const measureContext = document.createElement("canvas").getContext("2d");

function labelWidth(labels) {
  measureContext.font = LABEL_FONT;
  return Math.ceil(Math.max(0, ...labels.map((label) => measureContext.measureText(label).width)));
}

function svgElement(name, attributes, text) {
  const element = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  if (text !== undefined) element.textContent = text;
  return element;
}

function cellColor(intensity) {
  // White for no attention, the accent blue for the map's largest weight.
  const blend = (full) => Math.round(255 + (full - 255) * intensity);
  return `rgb(${blend(23)}, ${blend(73)}, ${blend(143)})`;
}

function drawAttention(map) {
  const rows = map.target_tokens.length;
  const columns = map.source_tokens.length;
  const angle = (SOURCE_LABEL_ANGLE_DEG * Math.PI) / 180;
  const sourceWidth = labelWidth(map.source_tokens);
  const left = labelWidth(map.target_tokens) + 2 * LABEL_GAP_PX;
  const top = Math.ceil(sourceWidth * Math.sin(angle)) + LABEL_HEIGHT_PX + LABEL_GAP_PX;
  const overhang = Math.ceil(sourceWidth * Math.cos(angle)); // the last label, past the grid
  const width = left + columns * CELL_PX + Math.max(overhang, LABEL_GAP_PX);
  const height = top + rows * CELL_PX + LABEL_GAP_PX;
  const largest = Math.max(...map.weights.flat(), Number.EPSILON);

  const svg = svgElement("svg", {
    class: "attention-map",
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": `Attention map: ${rows} English tokens by ${columns} Hindi tokens`,
  });

  map.source_tokens.forEach((token, column) => {
    const x = left + column * CELL_PX + CELL_PX / 2;
    const y = top - LABEL_GAP_PX;
    svg.append(
      svgElement("text", {
        x,
        y,
        transform: `rotate(-${SOURCE_LABEL_ANGLE_DEG} ${x} ${y})`,
        "dominant-baseline": "middle",
        lang: "hi",
      }, token),
    );
  });

  map.target_tokens.forEach((token, row) => {
    const y = top + row * CELL_PX + CELL_PX / 2;
    svg.append(
      svgElement("text", {
        x: left - LABEL_GAP_PX,
        y,
        "text-anchor": "end",
        "dominant-baseline": "middle",
        lang: "en",
      }, token),
    );

    map.weights[row].forEach((weight, column) => {
      const cell = svgElement("rect", {
        class: "cell",
        x: left + column * CELL_PX,
        y: top + row * CELL_PX,
        width: CELL_PX,
        height: CELL_PX,
        fill: cellColor(weight / largest),
      });
      const source = map.source_tokens[column];
      cell.append(svgElement("title", {}, `${token} → ${source}: ${weight.toFixed(3)}`));
      svg.append(cell);
    });
  });

  const figure = document.createElement("div");
  figure.className = "attention-sentence";
  const caption = document.createElement("p");
  const hindi = document.createElement("span");
  hindi.lang = "hi";
  hindi.textContent = map.source;
  const layers = limits && limits.decoder_layers ? ` of ${limits.decoder_layers}` : "";
  const note = document.createElement("span");
  note.className = "score";
  note.textContent = `layer ${map.layer + 1}${layers} · darkest cell ${largest.toFixed(3)}`;
  caption.append(hindi, " → ", map.translation, note);
  const scroll = document.createElement("div");
  scroll.className = "attention-scroll";
  scroll.append(svg);
  figure.append(caption, scroll);
  return figure;
}

// --- Copy ---

async function copyTranslation() {
  const text = page.result.textContent;
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // The Clipboard API exists only in secure contexts (https or localhost): select instead.
    const selection = window.getSelection();
    const range = document.createRange();
    range.selectNodeContents(page.result);
    selection.removeAllRanges();
    selection.addRange(range);
    document.execCommand("copy");
  }
  page.copy.textContent = "Copied";
  setTimeout(() => {
    page.copy.innerHTML = COPY_LABEL;
  }, COPIED_FEEDBACK_MS);
}

// --- Wiring ---

page.source.addEventListener("input", updateCounter);
page.source.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    translate();
  }
});
page.translate.addEventListener("click", translate);
page.copy.addEventListener("click", copyTranslation);
page.showAttention.addEventListener("change", () => {
  page.attentionLayer.disabled = !page.showAttention.checked;
});

updateCounter();
loadLimits();
watchReadiness();
