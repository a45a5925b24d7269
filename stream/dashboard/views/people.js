// The people tiles: thumbnail, name, where they are now, when last seen, time seen in all.
import { thumbnailUrl } from "../api.js";
import { el } from "../dom.js";
import { fmtAgo, fmtDuration } from "../format.js";
import { lastSeenOf, orderedPeople, presentOn } from "../select.js";
import { setOptions } from "./options.js";

function tileOf(box, id, onOpen) {
  const tile = box.querySelector(`.person[data-person="${CSS.escape(id)}"]`);
  if (tile) return tile;
  const img = el("img", { class: "thumb", alt: "", width: 96, height: 96 });
  img.addEventListener("error", () => img.classList.add("missing"));
  const made = el("button", { type: "button", class: "person", "data-person": id },
    img, el("span", { class: "name" }), el("span", { class: "id" }),
    el("span", { class: "present" }), el("span", { class: "seen" }), el("span", { class: "total" }));
  made.addEventListener("click", () => onOpen(id));
  return made;
}

/** Renders the tiles as of `now` (epoch ms, for "last seen … ago"); a click calls onOpen(id). */
export function renderPeople(state, now, onOpen) {
  const box = document.getElementById("people");
  const people = orderedPeople(state);
  if (people.length) box.querySelector(".empty")?.remove();
  const wanted = new Set(people.map((p) => p.id));
  for (const tile of box.querySelectorAll(".person")) {
    if (!wanted.has(tile.dataset.person)) tile.remove();
  }
  let previous = null;
  for (const person of people) {
    const tile = tileOf(box, person.id, onOpen);
    const img = tile.querySelector("img");
    const src = thumbnailUrl(person.id, person.exemplars);
    if (img.getAttribute("src") !== src) { img.classList.remove("missing"); img.src = src; }
    tile.querySelector(".name").textContent = person.name || "unnamed";
    tile.classList.toggle("unnamed", !person.name);
    tile.querySelector(".id").textContent = person.id;
    const on = presentOn(state, person.id);
    tile.classList.toggle("is-present", on.length > 0);
    tile.querySelector(".present").textContent = on.length ? `on ${on.join(", ")} now` : "";
    const seen = lastSeenOf(state, person.id);
    const ago = seen === null ? null : fmtAgo(seen, now);
    tile.querySelector(".seen").textContent = ago ? `last seen ${ago}` : "never seen";
    tile.querySelector(".total").textContent = `seen ${fmtDuration(person.seen_s || 0)} in all`;
    tile.setAttribute("aria-label", `${person.name || "unnamed"} (${person.id}), `
      + (on.length ? "present now" : `last seen ${ago || "never"}`));
    const expected = previous ? previous.nextElementSibling : box.firstElementChild;
    if (expected !== tile) {
      if (previous) previous.after(tile); else box.prepend(tile);
    }
    previous = tile;
  }
  setOptions(document.getElementById("filter-person"),
    people.map((p) => [p.id, p.name ? `${p.name} (${p.id})` : p.id]));
}
