// Making a template: pick an image, click the region's landmarks in order, save.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { info: null, source: null, placed: [], skipped: new Set() };

const viewer = new Viewer($("canvas"), {
  onEmptyClick: (x, y) => {
    const next = nextLandmark();
    if (!state.source || !next) return false;
    state.placed.push({ name: next.name, kind: next.kind, x, y });
    render();
    return true;
  },
  onMarkerDrop: (name, x, y) => {
    const item = state.placed.find((p) => p.name === name);
    Object.assign(item, { x, y });
    render();
  },
});

function message(text, kind = "") {
  $("message").textContent = text;
  $("message").className = kind;
}

function sequence() {
  return (state.info && state.info.regions[$("region").value]) || [];
}

function nextLandmark() {
  const done = new Set(state.placed.map((p) => p.name));
  return sequence().find((lm) => !done.has(lm.name) && !state.skipped.has(lm.name)) || null;
}

function render() {
  viewer.markers = state.placed.map((p) => ({ ...p, colour: "#4fc3f7" }));
  viewer.draw();
  const next = nextLandmark();
  $("prompt").innerHTML = next
    ? `Next: <b>${next.name}</b> (${next.kind})`
    : "All landmarks placed or skipped: save the template.";
  const table = $("landmarks");
  table.innerHTML = "";
  for (const p of state.placed) {
    const row = table.insertRow();
    row.insertCell().textContent = p.name;
    row.insertCell().textContent = `${p.x.toFixed(1)}, ${p.y.toFixed(1)}`;
  }
}

async function loadSource(source, label) {
  state.source = source;
  state.placed = [];
  state.skipped = new Set();
  try {
    await viewer.load(`/api/sources/${encodeURIComponent(source)}/pixels`);
    $("image-title").textContent = label;
    render();
    message("Click the first landmark.");
  } catch (error) {
    message(error.message, "error");
  }
}

$("image-choice").addEventListener("change", () => {
  const sop = $("image-choice").value;
  if (sop) loadSource(sop, $("image-choice").selectedOptions[0].textContent);
});
$("upload").addEventListener("change", async () => {
  const file = $("upload").files[0];
  if (!file) return;
  const response = await fetch("/api/template/upload", { method: "POST", body: file });
  const body = await response.json();
  if (!response.ok) return message(body.error, "error");
  loadSource(body.source, `uploaded file ${file.name}`);
});
$("region").addEventListener("change", () => {
  state.placed = [];
  state.skipped = new Set();
  render();
});
$("save").addEventListener("click", async () => {
  if (!state.source || state.placed.length < 2) {
    return message("Place at least two landmarks first.", "error");
  }
  const response = await fetch("/api/template", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({
      source: state.source,
      region: $("region").value,
      landmarks: state.placed.map(({ name, x, y }) => ({ name, x, y })),
    }),
  });
  const body = await response.json();
  if (!response.ok) return message(body.error, "error");
  message(`Saved ${body.landmarks} landmarks to ${body.saved.landmarks}. ${body.rebuild}`, "done");
});
document.addEventListener("keydown", (event) => {
  if (event.target.tagName === "INPUT" || event.target.tagName === "SELECT") return;
  if (event.key.toLowerCase() === "s") {
    const next = nextLandmark();
    if (next) state.skipped.add(next.name);
    render();
  } else if (event.key === "Backspace") {
    const last = state.placed.pop();
    if (last) state.skipped.delete(last.name);
    render();
  }
});

(async () => {
  const response = await fetch("/api/template");
  state.info = await response.json();
  for (const region of Object.keys(state.info.regions)) {
    $("region").add(new Option(region, region));
  }
  if (state.info.current) $("region").value = state.info.current.region;
  $("image-choice").add(new Option("choose…", ""));
  for (const image of state.info.images) {
    $("image-choice").add(new Option(`${image.partition_key} (${image.columns}×${image.rows})`, image.sop_instance_uid));
  }
  $("current").textContent = state.info.current
    ? `${state.info.current.region}: ${state.info.current.landmarks.map((l) => l.name).join(", ")}`
    : "none yet";
  render();
})();
window.templateApp = { state, viewer };
