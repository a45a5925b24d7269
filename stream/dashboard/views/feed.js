// The live feed: one item per person.* and identity.* event, newest first, filtered.
import { thumbnailUrl } from "../api.js";
import { el } from "../dom.js";
import { fmtTime } from "../format.js";
import { describe, labelOf, matchesFilter } from "../select.js";

function item(state, entry) {
  const id = entry.person;
  const time = new Date(entry.time ?? 0);
  const person = state.people[id];
  const img = el("img", { class: "thumb", alt: "", width: 48, height: 48,
    src: entry.thumbnail ? `data:image/jpeg;base64,${entry.thumbnail}`
                         : thumbnailUrl(id, person ? person.exemplars : 0) });
  img.addEventListener("error", () => img.classList.add("missing"), { once: true });
  return el("li", { class: "event", "data-key": entry.key, "data-type": entry.type,
                    "data-event-person": id, "data-camera": entry.camera ?? "" },
    img,
    el("span", { class: "text" },
       el("button", { type: "button", class: "link who", "data-open": id }),
       ` ${describe(entry)}`,
       ...(entry.camera ? [" on ", el("span", { class: "cam" }, entry.camera)] : [])),
    el("time", { datetime: time.toISOString(), title: time.toLocaleString() }, fmtTime(time)));
}

export function renderFeed(state) {
  const feed = document.getElementById("feed");
  document.getElementById("filter-camera").value = state.filter.camera;
  document.getElementById("filter-person").value = state.filter.person;
  const shown = new Map([...feed.children].map((node) => [node.dataset.key, node]));
  const wanted = new Set(state.feed.map((entry) => entry.key));
  for (const [key, node] of shown) if (!wanted.has(key)) node.remove();
  let previous = null;
  for (const entry of state.feed) {
    let node = shown.get(entry.key);
    if (node && node.dataset.eventPerson !== entry.person) {  // merged into someone else
      node.remove();
      node = undefined;
    }
    node ||= item(state, entry);
    node.querySelector(".who").textContent = labelOf(state, entry.person, entry.name);
    node.hidden = !matchesFilter(entry, state.filter);
    const expected = previous ? previous.nextElementSibling : feed.firstElementChild;
    if (expected !== node) {
      if (previous) previous.after(node); else feed.prepend(node);
    }
    previous = node;
  }
}
