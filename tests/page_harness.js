// Run service/static/app.js in Node with stand-ins for the DOM and fetch, click Translate
// once and print what the page did as JSON. tests/test_web_page.py runs it.
//
//   node tests/page_harness.js APP_JS LIMITS_JSON
//
// LIMITS_JSON is the body that GET /limits returns; GET /ready returns 200.
"use strict";

const fs = require("node:fs");
const vm = require("node:vm");

const [appPath, limitsJson] = process.argv.slice(2);
const limits = JSON.parse(limitsJson);

class FakeElement {
  constructor(id) {
    this.id = id;
    this.value = "";
    this.checked = false;
    this.disabled = false;
    this.hidden = false;
    this.open = false;
    this.title = "";
    this.textContent = "";
    this.innerHTML = "";
    this.children = [];
    this.listeners = {};
    this.classList = { toggle() {} };
  }

  addEventListener(type, listener) {
    this.listeners[type] = listener;
  }

  append(...children) {
    this.children.push(...children);
  }

  replaceChildren(...children) {
    this.children = children;
  }
}

const elements = new Map();
function getElementById(id) {
  if (!elements.has(id)) elements.set(id, new FakeElement(id));
  return elements.get(id);
}
// The state that index.html sets up.
getElementById("show-attention").checked = true;
getElementById("attention-note").hidden = true;
getElementById("source").value = "नमस्ते";

const sentBodies = [];
async function fetch(url, options = {}) {
  const path = new URL(url).pathname;
  let body = {};
  if (path === "/limits") body = limits;
  if (path === "/ready") body = { status: "ready" };
  if (path === "/translate") {
    sentBodies.push(JSON.parse(options.body));
    body = { translation: "Hello", score: -0.5, time_ms: 1 };
  }
  return { ok: true, status: 200, statusText: "OK", text: async () => JSON.stringify(body) };
}

const context = {
  document: {
    baseURI: "http://127.0.0.1:8000/",
    getElementById,
    createElement: () => ({ getContext: () => ({ measureText: () => ({ width: 0 }) }) }),
  },
  location: { origin: "http://127.0.0.1:8000" },
  fetch,
  setTimeout: () => 0, // the page polls /ready only after a failure, and /ready succeeds
  Option: class {
    constructor(text, value) {
      this.text = text;
      this.value = value;
    }
  },
  URL,
  AbortController,
  console,
};

async function settle() {
  for (let round = 0; round < 20; round += 1) await new Promise((done) => setImmediate(done));
}

async function main() {
  vm.runInNewContext(fs.readFileSync(appPath, "utf-8"), context, { filename: appPath });
  await settle();
  const checkbox = getElementById("show-attention");
  const before = {
    checked: checkbox.checked,
    disabled: checkbox.disabled,
    title: checkbox.title,
    noteHidden: getElementById("attention-note").hidden,
    layerDisabled: getElementById("attention-layer").disabled,
  };

  await getElementById("translate").listeners.click();
  await settle();
  console.log(JSON.stringify({ ...before, sent: sentBodies }));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
