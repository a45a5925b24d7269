// The camera tiles: status, analysis rate, drops and a live preview.
import { withToken } from "../api.js";
import { el } from "../dom.js";
import { setOptions } from "./options.js";

const PREVIEW_INTERVAL_MS = 333;
const PREVIEW_BACKOFF_MAX_MS = 30000;

/** Milliseconds until the next preview of a camera in `status` after `failures` failed loads
 * in a row, or null: not before the camera streams (a camera without a frame answers 404, and
 * every 404 is a line in the browser's console), and doubling from 1 s while loads fail. */
export function previewWait(status, failures, hidden) {
  if (status !== "streaming") return null;
  if (failures > 0) return Math.min(PREVIEW_BACKOFF_MAX_MS, 1000 * 2 ** (failures - 1));
  return hidden ? 2000 : PREVIEW_INTERVAL_MS;
}

function tileOf(box, name) {
  let tile = box.querySelector(`.camera[data-camera="${CSS.escape(name)}"]`);
  if (tile) return tile;
  box.querySelector(".empty")?.remove();
  const img = el("img", { class: "preview", alt: `Latest analysed frame of camera ${name}`,
                          width: 640, height: 360 });
  tile = el("article", { class: "camera", "data-camera": name, "aria-label": `Camera ${name}` },
    el("h3", {}, name),
    el("p", { class: "status" }, el("span", { class: "dot", "aria-hidden": "true" }),
       el("span", { class: "status-text" }), " ", el("span", { class: "reason" })),
    el("div", { class: "preview-box" }, img,
       el("p", { class: "waiting" }, "waiting for the first analysed frame…")),
    el("p", { class: "stats" }, el("span", { class: "fps" }), " · ", el("span", { class: "drops" })),
    el("p", { class: "url" }));
  box.append(tile);
  return tile;
}

function startPreview(name, tile) {
  // Each frame loads in an image of its own that then takes the place of the shown one: no
  // flicker, no broken image while one fails, and one request per frame (they are no-store).
  // The loop ends when the camera stops streaming; renderCameras starts it again.
  tile.dataset.previewing = "yes";
  let failures = 0;
  const again = (started) => {
    const wait = previewWait(tile.dataset.status, failures, document.hidden);
    if (wait === null) { delete tile.dataset.previewing; return; }
    setTimeout(load, Math.max(30, wait - (performance.now() - started)));
  };
  const load = () => {
    const started = performance.now();
    const next = new Image();
    next.onload = () => {
      const img = tile.querySelector("img.preview");
      for (const key of ["class", "alt", "width", "height"]) next.setAttribute(key, img.getAttribute(key));
      img.replaceWith(next);
      tile.classList.add("has-preview");
      failures = 0;
      again(started);
    };
    next.onerror = () => { failures += 1; again(started); };
    next.src = withToken(`/api/cameras/${encodeURIComponent(name)}/preview.jpg`,
                         { t: Date.now() }).href;
  };
  load();
}

export function renderCameras(state) {
  const box = document.getElementById("cameras");
  const cameras = Object.values(state.cameras);
  for (const camera of cameras) {
    const tile = tileOf(box, camera.name);
    tile.dataset.status = camera.status || "unknown";
    tile.querySelector(".status-text").textContent = camera.status || "unknown";
    tile.querySelector(".reason").textContent = camera.reason ? `— ${camera.reason}` : "";
    const fps = camera.analyzed_fps;
    tile.querySelector(".fps").textContent =
      typeof fps === "number" ? `${fps.toFixed(1)} fps analysed` : "fps —";
    const dropped = camera.frames_dropped, analysed = camera.frames_analyzed;
    tile.querySelector(".drops").textContent = typeof dropped === "number"
      ? `${dropped} dropped of ${dropped + (analysed || 0)}` : "drops —";
    tile.querySelector(".url").textContent = camera.url || "";
    if (camera.status === "streaming" && !tile.dataset.previewing) startPreview(camera.name, tile);
  }
  setOptions(document.getElementById("filter-camera"), cameras.map((c) => [c.name, c.name]));
}
