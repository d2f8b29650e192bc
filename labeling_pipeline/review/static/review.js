// The review page: queue, image view, decisions. Every decision is sent to the server at once
// and stored there as a correction record; the page keeps no state of its own but the reviewer
// name (localStorage) and the view.
"use strict";

const COLOURS = {
  ok: "#3ccf5a",
  needs_review: "#ff9a1f",
  corrected: "#4fc3f7",
  confirmed: "#a5e887",
  not_in_view: "#9e9e9e",
};
const REVIEWER_KEY = "labeling_pipeline.reviewer";
const $ = (id) => document.getElementById(id);

const state = { queue: [], image: null, filters: null };

const viewer = new Viewer($("canvas"), {
  onSelect: () => renderLandmarks(),
  onMarkerDrop: (name, x, y) => act([{ landmark: name, action: "move", x, y }]),
  onEmptyClick: (x, y) => {
    // A selected landmark without a position is placed where the reviewer clicks.
    const lm = selectedLandmark();
    if (!lm || lm.x != null) return false;
    act([{ landmark: lm.landmark, action: "move", x, y }]);
    return true;
  },
  onWindow: (center, width) => {
    $("window-level").value = center.toPrecision(5);
    $("window-width").value = width.toPrecision(5);
  },
});

function message(text, kind = "") {
  const footer = $("message");
  footer.textContent = text;
  footer.className = kind;
}

function query() {
  const params = new URLSearchParams();
  params.set("study", $("filter-study").value);
  params.set("landmark", $("filter-landmark").value);
  params.set("status", state.filters ? $("filter-status").value : "needs_review");
  return params.toString();
}

async function getJSON(url, options) {
  const response = await fetch(url, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `request failed (${response.status})`);
  return body;
}

function fillSelect(select, values, keep) {
  const current = select.value;
  select.innerHTML = keep ? `<option value="">all</option>` : "";
  for (const value of values) {
    const option = document.createElement("option");
    option.value = option.textContent = value;
    select.appendChild(option);
  }
  select.value = values.includes(current) || current === "" ? current : select.options[0].value;
}

async function loadQueue() {
  const body = await getJSON(`/api/queue?${query()}`);
  state.queue = body.images;
  if (!state.filters) {
    state.filters = body.filters;
    fillSelect($("filter-study"), body.filters.studies, true);
    fillSelect($("filter-landmark"), body.filters.landmarks, true);
    fillSelect($("filter-status"), body.filters.statuses, false);
    $("filter-status").value = "needs_review";
  }
  renderQueue();
}

function renderQueue() {
  const list = $("queue");
  list.innerHTML = "";
  $("queue-count").textContent = `(${state.queue.length})`;
  $("queue-empty").hidden = state.queue.length > 0;
  for (const item of state.queue) {
    const li = document.createElement("li");
    li.dataset.sop = item.sop_instance_uid;
    if (state.image && state.image.sop_instance_uid === item.sop_instance_uid) {
      li.className = "current";
    }
    const counts = Object.entries(item.counts).map(([k, v]) => `${v} ${k}`).join(", ");
    const confidence =
      item.min_confidence == null ? "" : ` · lowest confidence ${item.min_confidence.toFixed(2)}`;
    const date = formatDate(item.study_date);
    li.innerHTML =
      `<div class="key"></div><div class="meta"></div><div class="meta"></div><div class="reasons"></div>`;
    li.children[0].textContent = item.partition_key;
    li.children[1].textContent = `${date} · ${item.matching.join(", ")}${confidence}`;
    li.children[2].textContent = counts;
    li.children[3].textContent = item.reasons.join("; ");
    li.addEventListener("click", () => openImage(item.sop_instance_uid));
    list.appendChild(li);
  }
}

function formatDate(text) {
  return /^\d{8}$/.test(text || "")
    ? `${text.slice(0, 4)}-${text.slice(4, 6)}-${text.slice(6)}`
    : "no date";
}

function selectedLandmark() {
  if (!state.image) return null;
  return state.image.landmarks.find((lm) => lm.landmark === viewer.selected) || null;
}

function showImage(detail) {
  const keep = viewer.selected;
  state.image = detail;
  viewer.markers = detail.landmarks.map((lm) => ({
    name: lm.landmark,
    kind: lm.kind,
    x: lm.x,
    y: lm.y,
    colour: COLOURS[lm.status] || "#fff",
    hollow: lm.status === "needs_review",
    label:
      lm.status === "needs_review"
        ? `${lm.landmark}? ${lm.confidence == null ? "" : lm.confidence.toFixed(2)}`
        : lm.status === "ok"
          ? lm.landmark
          : `${lm.landmark} ${lm.status === "corrected" ? "✎" : "✓"}`,
  }));
  const names = detail.landmarks.map((lm) => lm.landmark);
  if (!names.includes(keep)) {
    const first = detail.landmarks.find((lm) => lm.status === "needs_review");
    viewer.selected = first ? first.landmark : names[0];
  }
  const flagged = detail.landmarks.filter((lm) => lm.status === "needs_review").length;
  const spacing = detail.pixel_spacing_mm.map((v) => v.toFixed(3)).join(" × ");
  $("image-title").innerHTML = "";
  const title = document.createElement("span");
  title.innerHTML = `<b></b> · ${formatDate(detail.study_date)} · ${detail.columns}×${detail.rows} px, ${spacing} mm · ${flagged} to review · ${detail.remaining} other images in the queue`;
  title.querySelector("b").textContent = detail.partition_key;
  $("image-title").appendChild(title);
  renderLandmarks();
  renderQueue();
  viewer.draw();
}

function renderLandmarks() {
  const table = $("landmarks");
  table.innerHTML = "";
  if (!state.image) return;
  for (const lm of state.image.landmarks) {
    const row = table.insertRow();
    row.dataset.landmark = lm.landmark;
    if (lm.landmark === viewer.selected) row.className = "selected";
    const name = row.insertCell();
    name.textContent = lm.landmark;
    const status = row.insertCell();
    status.innerHTML = `<span class="status ${lm.status}">${lm.status.replace(/_/g, " ")}</span>`;
    const info = row.insertCell();
    const parts = [];
    if (lm.confidence != null && lm.source === "machine") parts.push(lm.confidence.toFixed(2));
    if (lm.template && lm.template !== "default" && lm.source === "machine") {
      parts.push(`template ${lm.template}`);
    }
    if (lm.x == null && lm.status !== "not_in_view") parts.push("no position: click to place");
    if (lm.reviewer) parts.push(`by ${lm.reviewer}`);
    info.textContent = parts.join(" · ");
    row.addEventListener("click", () => viewer.select(lm.landmark));
    if (lm.reason) {
      // The machine's reason on a line of its own, under the landmark it explains.
      const reasonRow = table.insertRow();
      reasonRow.className = `reason-row${lm.landmark === viewer.selected ? " selected" : ""}`;
      const cell = reasonRow.insertCell();
      cell.colSpan = 3;
      cell.className = "reason";
      cell.textContent = lm.reason;
      reasonRow.addEventListener("click", () => viewer.select(lm.landmark));
    }
  }
}

async function openImage(sop) {
  try {
    const detail = await getJSON(`/api/images/${encodeURIComponent(sop)}?${query()}`);
    viewer.selected = null;
    await viewer.load(`/api/sources/${encodeURIComponent(sop)}/pixels`);
    showImage(detail);
    message(`Image ${detail.partition_key}: drag each orange landmark to its place, or confirm it.`);
  } catch (error) {
    message(error.message, "error");
  }
}

function reviewer() {
  const name = $("reviewer").value.trim();
  if (!name) {
    $("reviewer").focus();
    throw new Error("Type your name in the Reviewer box first; every decision records it.");
  }
  return name;
}

async function act(actions, thenNext = false) {
  if (!state.image) return;
  const sop = state.image.sop_instance_uid;
  try {
    const body = await getJSON(`/api/images/${encodeURIComponent(sop)}/actions?${query()}`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ reviewer: reviewer(), actions }),
    });
    showImage(body.image);
    await loadQueue();
    const left = body.image.landmarks.filter((lm) => lm.status === "needs_review");
    if (left.length === 0) {
      message(`Saved (${body.recorded} decisions). This image is done; ${body.image.remaining} to go.`, "done");
      if (thenNext) nextImage();
    } else {
      message(`Saved (${body.recorded} decisions). Still to review: ${left.map((lm) => lm.landmark).join(", ")}.`);
    }
  } catch (error) {
    message(error.message, "error");
    openImage(sop); // show the stored state again (a rejected drag snaps back)
  }
}

function actOnSelected(action) {
  const lm = selectedLandmark();
  if (!lm) return message("Select a landmark first (click it, or Tab).", "error");
  act([{ landmark: lm.landmark, action }]);
}

function nextImage() {
  const next = state.image ? state.image.next : state.queue[0] && state.queue[0].sop_instance_uid;
  if (next) openImage(next);
  else message("No more images to review with these filters.", "done");
}

function stepLandmark(delta) {
  if (!state.image) return;
  const names = state.image.landmarks.map((lm) => lm.landmark);
  const index = names.indexOf(viewer.selected);
  viewer.select(names[(index + delta + names.length) % names.length]);
}

document.addEventListener("keydown", (event) => {
  if (event.target.tagName === "INPUT" || event.target.tagName === "SELECT") return;
  const key = event.key;
  const handled = {
    c: () => actOnSelected("confirm"),
    x: () => actOnSelected("not_in_view"),
    u: () => actOnSelected("revert"),
    a: () => act([{ action: "accept_all" }], true),
    n: nextImage,
    Enter: nextImage,
    Tab: () => stepLandmark(event.shiftKey ? -1 : 1),
    "]": () => stepLandmark(1),
    "[": () => stepLandmark(-1),
    r: () => viewer.fit(),
    "+": () => viewer.zoom(1.25),
    "=": () => viewer.zoom(1.25),
    "-": () => viewer.zoom(0.8),
  }[key.length === 1 ? key.toLowerCase() : key];
  if (handled) {
    event.preventDefault();
    handled();
  }
});

$("confirm").addEventListener("click", () => actOnSelected("confirm"));
$("not-in-view").addEventListener("click", () => actOnSelected("not_in_view"));
$("revert").addEventListener("click", () => actOnSelected("revert"));
$("accept-all").addEventListener("click", () => act([{ action: "accept_all" }], true));
$("next").addEventListener("click", nextImage);
$("zoom-in").addEventListener("click", () => viewer.zoom(1.25));
$("zoom-out").addEventListener("click", () => viewer.zoom(0.8));
$("fit").addEventListener("click", () => viewer.fit());
$("window-reset").addEventListener("click", () => viewer.setWindow(...viewer.defaultWindow));
for (const id of ["window-level", "window-width"]) {
  $(id).addEventListener("change", () =>
    viewer.setWindow(Number($("window-level").value), Number($("window-width").value)),
  );
}
for (const id of ["filter-study", "filter-landmark", "filter-status"]) {
  $(id).addEventListener("change", async () => {
    await loadQueue();
    if (state.queue.length) openImage(state.queue[0].sop_instance_uid);
  });
}
$("reviewer").value = localStorage.getItem(REVIEWER_KEY) || "";
$("reviewer").addEventListener("input", () =>
  localStorage.setItem(REVIEWER_KEY, $("reviewer").value.trim()),
);

// For tests and scripts: where an image point is on the page, and the loaded state.
window.reviewApp = {
  state,
  viewer,
  pagePosition(x, y) {
    const box = viewer.canvas.getBoundingClientRect();
    const [sx, sy] = viewer.toScreen(x, y);
    return [box.left + sx, box.top + sy];
  },
};

(async () => {
  try {
    await loadQueue();
    if (state.queue.length) await openImage(state.queue[0].sop_instance_uid);
    else message("Nothing to review: every landmark is ok or decided.", "done");
  } catch (error) {
    message(error.message, "error");
  }
})();
