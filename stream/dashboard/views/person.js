// The person view (a dialog): facts, timeline, faces and appearances, rename, split, merge and
// forget. It shows state.detail, the person's document as the REST API last gave it.
import { el } from "../dom.js";
import { fmtDuration, fmtTime } from "../format.js";
import { displayName } from "../select.js";

function renderTimeline(appearances, now) {
  const groups = new Map();
  for (const a of appearances) {
    if (!groups.has(a.source)) groups.set(a.source, []);
    groups.get(a.source).push(a);
  }
  const camera = appearances.filter((a) => a.source.startsWith("camera:"));
  const cameraFrom = Math.min(...camera.map((a) => a.start));
  const cameraTo = Math.max(...camera.map((a) => a.end ?? now));
  const rows = [];
  for (const [source, list] of groups) {
    const live = source.startsWith("camera:");
    const from = live ? cameraFrom : 0;
    const to = live ? cameraTo : Math.max(...list.map((a) => a.end ?? a.start));
    const span = Math.max(to - from, 1);
    const track = el("div", { class: "track", role: "list", "aria-label": `Appearances on ${source}` });
    for (const a of list) {
      const end = a.end ?? now;
      const left = ((a.start - from) / span) * 100, width = Math.max(((end - a.start) / span) * 100, 0.6);
      const label = live
        ? `${fmtTime(new Date(a.start * 1000))} – ${fmtTime(new Date(end * 1000))} (${fmtDuration(end - a.start)})`
        : `${a.start.toFixed(1)} s – ${end.toFixed(1)} s of the video`;
      track.append(el("span", { class: "bar", role: "listitem", title: label, "aria-label": label,
                                style: `left:${Math.min(left, 99.4)}%;width:${Math.min(width, 100 - left)}%` }));
    }
    const axis = live
      ? [fmtTime(new Date(from * 1000)), fmtTime(new Date(to * 1000))]
      : ["0 s", `${to.toFixed(1)} s`];
    rows.push(el("div", { class: "row", "data-source": source },
      el("span", { class: "source" }, source.replace(/^camera:/, "")),
      track, el("span", { class: "axis" }, el("span", {}, axis[0]), el("span", {}, axis[1]))));
  }
  return rows.length ? el("div", { class: "timeline" }, ...rows) : el("p", {}, "No appearance recorded.");
}

function renderDetail(state, person, actions, now) {
  // A reload (the person came or went) must not undo what the user was choosing or typing.
  const body = document.getElementById("person-body");
  const ticked = new Set([...body.querySelectorAll("input[type=checkbox]:checked")]
    .map((input) => `${input.name}:${input.value}`));
  const typing = document.activeElement?.id === "rename-input" ? document.activeElement.value : null;
  document.getElementById("person-title").textContent =
    person.name ? `${person.name} (${person.id})` : person.id;
  const rename = el("form", { id: "rename-form", class: "inline" },
    el("label", {}, "Name ", el("input", { id: "rename-input", name: "name", value: person.name || "",
                                          autocomplete: "off" })),
    el("button", { type: "submit", id: "rename-submit" }, "Rename"),
    el("button", { type: "button", id: "rename-clear", class: "secondary" }, "Clear name"));
  rename.addEventListener("submit", (event) => {
    event.preventDefault();
    actions.rename(person.id, rename.querySelector("input").value.trim() || null);
  });
  rename.querySelector("#rename-clear").addEventListener("click", () => actions.rename(person.id, null));

  const facts = el("p", { class: "facts" },
    `created ${new Date(person.created).toLocaleString()} · last seen ${new Date(person.last_seen).toLocaleString()}`
    + ` · seen ${fmtDuration(person.seen_s || 0)} in ${person.appearances} appearance(s) · ${person.exemplars} face(s)`);

  const faces = el("fieldset", { class: "faces" }, el("legend", {}, "Faces kept (select some to split them off)"));
  for (const e of person.exemplar_list) {
    const alt = `face ${e.id} from ${e.source}, quality ${e.quality}`;
    faces.append(el("label", { class: "face", title: alt },
      el("input", { type: "checkbox", name: "exemplar", value: e.id, "data-exemplar": e.id }),
      e.face ? el("img", { src: `data:image/jpeg;base64,${e.face}`, alt, width: 72, height: 72 })
             : el("span", { class: "noface" }, `#${e.id}`)));
  }
  const appearances = el("details", { class: "appearances" },
    el("summary", {}, `Appearances (${person.appearance_list.length}) — select to split`),
    el("ul", {}, ...person.appearance_list.map((a) => {
      const live = a.source.startsWith("camera:");
      const span = live ? `${new Date(a.start * 1000).toLocaleString()} – ${a.end ? fmtTime(new Date(a.end * 1000)) : "now"}`
                        : `${a.start.toFixed(1)}–${(a.end ?? a.start).toFixed(1)} s`;
      return el("li", {}, el("label", {}, el("input", { type: "checkbox", name: "appearance", value: a.id,
        "data-appearance": a.id }), ` ${a.source}: ${span}`));
    })));
  const split = el("button", { type: "button", id: "split-button" }, "Split selected into a new person");
  split.addEventListener("click", () => {
    const picked = (name) => [...body.querySelectorAll(`input[name=${name}]:checked`)]
      .map((input) => Number(input.value));
    actions.split(person.id, picked("exemplar"), picked("appearance"));
  });

  const others = Object.values(state.people).filter((p) => p.id !== person.id);
  const merge = el("form", { id: "merge-form", class: "inline" },
    el("label", {}, "Merge into this person: ",
       el("select", { id: "merge-other", name: "other", required: true },
          el("option", { value: "" }, "choose a person…"),
          ...others.map((p) => el("option", { value: p.id }, p.name ? `${p.name} (${p.id})` : p.id)))),
    el("button", { type: "submit" }, "Merge"));
  merge.addEventListener("submit", (event) => {
    event.preventDefault();
    const other = merge.querySelector("select").value;
    if (!other) return;
    if (!confirm(`Merge ${displayName(state, other)} (${other}) into ${displayName(state, person.id)} (${person.id})? ${other} disappears.`)) return;
    actions.merge(person.id, other);
  });

  const forget = el("button", { type: "button", id: "forget-button", class: "danger" }, "Forget this person…");
  forget.addEventListener("click", () => {
    if (!confirm(`Forget ${displayName(state, person.id)} (${person.id})? Their faces and history are erased for good.`)) return;
    actions.forget(person.id);
  });

  body.replaceChildren(
    rename, facts,
    el("h3", {}, "Timeline"), renderTimeline(person.appearance_list, now),
    faces, appearances, el("div", { class: "actions" }, split),
    el("h3", {}, "Merge or forget"), merge, el("div", { class: "actions" }, forget));
  for (const input of body.querySelectorAll("input[type=checkbox]")) {
    input.checked = ticked.has(`${input.name}:${input.value}`);
  }
  if (typing !== null) {
    const input = document.getElementById("rename-input");
    input.value = typing;
    input.focus();
  }
}

/** Opens, fills or closes the dialog as state.open and state.detail say (now: epoch s). */
export function renderPersonView(state, actions, now) {
  const dialog = document.getElementById("person-dialog");
  if (!state.open) {
    if (dialog.open) dialog.close();
    return;
  }
  const body = document.getElementById("person-body");
  if (!state.detail) {
    document.getElementById("person-title").textContent = displayName(state, state.open);
    body.replaceChildren(el("p", {}, "Loading…"));
  } else if (state.detail.error) {
    body.replaceChildren(el("p", { class: "error" }, state.detail.error));
  } else {
    renderDetail(state, state.detail, actions, now);
  }
  if (!dialog.open) dialog.showModal();
}
