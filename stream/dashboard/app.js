// facestream dashboard: cameras, the live feed and the gallery, kept live by /events.
import { api, ApiError, askToken, withToken } from "./api.js";
import { el, fmtDuration, fmtTime, fmtAgo, personNumber } from "./dom.js";

const FEED_MAX = 200;
const PREVIEW_INTERVAL_MS = 333;

const state = {
  cameras: new Map(),        // name -> camera document (GET /api/cameras or camera.status)
  people: new Map(),         // id -> person summary (GET /api/persons)
  present: new Map(),        // id -> Set of cameras the person is on now
  lastSeen: new Map(),       // id -> Date of the newest person.* event
  seen: new Set(),           // keys of events already handled (replays repeat them)
  log: [],                   // the newest events handled: {type, person, camera, name} (tests)
  open: null,                // id of the person shown in the dialog
  camerasApi: true,          // false when the service has no /api/cameras
};

const $ = (selector) => document.querySelector(selector);

// ---------- messages and the connection banner ----------

let messageTimer = 0;
function say(text, error = false) {
  // A modal dialog covers the page: its own message line is used while it is open.
  const box = $("#person-dialog").open ? $("#person-message") : $("#message");
  box.textContent = text;
  box.classList.toggle("error", error);
  box.hidden = false;
  clearTimeout(messageTimer);
  messageTimer = setTimeout(() => { box.hidden = true; }, 6000);
}

function setConnection(kind, text) {
  const banner = $("#connection");
  banner.dataset.state = kind;
  banner.textContent = text;
  document.body.dataset.connection = kind;
}

// ---------- helpers ----------

function displayName(id) {
  const person = state.people.get(id);
  return person && person.name ? person.name : id;
}

function thumbnailUrl(id) {
  const person = state.people.get(id);
  return withToken(`/api/persons/${encodeURIComponent(id)}/thumbnail.jpg`,
    { v: person ? person.exemplars : 0 }).href;
}

function debounce(fn, ms) {
  let timer = 0;
  return () => { clearTimeout(timer); timer = setTimeout(fn, ms); };
}

function throttle(fn, ms) {
  let last = 0, timer = 0;
  return () => {
    const wait = last + ms - Date.now();
    if (wait <= 0) { last = Date.now(); fn(); return; }
    if (!timer) timer = setTimeout(() => { timer = 0; last = Date.now(); fn(); }, wait);
  };
}

// ---------- cameras ----------

function cameraTile(name) {
  let tile = document.querySelector(`.camera[data-camera="${CSS.escape(name)}"]`);
  if (tile) return tile;
  $("#cameras .empty")?.remove();
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
  $("#cameras").append(tile);
  startPreview(name, tile, img);
  addOption($("#filter-camera"), name, name);
  return tile;
}

function startPreview(name, tile, img) {
  // Each frame loads in an image of its own that then takes the place of the shown one: no
  // flicker, no broken image while one fails, and one request per frame (they are no-store).
  const load = () => {
    const started = performance.now();
    const next = new Image();
    next.onload = () => {
      for (const key of ["class", "alt", "width", "height"]) next.setAttribute(key, img.getAttribute(key));
      img.replaceWith(next);
      img = next;
      tile.classList.add("has-preview");
      const wait = (document.hidden ? 2000 : PREVIEW_INTERVAL_MS) - (performance.now() - started);
      setTimeout(load, Math.max(30, wait));
    };
    next.onerror = () => setTimeout(load, 1000);
    next.src = withToken(`/api/cameras/${encodeURIComponent(name)}/preview.jpg`,
                         { t: Date.now() }).href;
  };
  load();
}

function renderCamera(camera) {
  const tile = cameraTile(camera.name);
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
}

async function refreshCameras() {
  if (!state.camerasApi) return;
  try {
    const cameras = await api("/api/cameras");
    for (const camera of cameras) {
      state.cameras.set(camera.name, { ...state.cameras.get(camera.name), ...camera });
      renderCamera(state.cameras.get(camera.name));
    }
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) state.camerasApi = false;
  }
}

// ---------- the live feed ----------

function addOption(select, value, label) {
  let option = [...select.options].find((o) => o.value === value);
  if (!option) {
    option = el("option", { value });
    select.append(option);
  }
  option.textContent = label;
}

function applyFilter(item) {
  const camera = $("#filter-camera").value, person = $("#filter-person").value;
  item.hidden = Boolean((camera && item.dataset.camera !== camera)
                        || (person && item.dataset.eventPerson !== person));
}

function feedItem(event) {
  const id = event.person;
  const time = new Date(event.captured_at || event.end || event.time);
  let what;
  if (event.type === "person.appeared") what = event.new ? "appeared (new)" : "appeared";
  else if (event.type === "person.updated") what = "still seen";
  else what = `left after ${fmtDuration(event.duration_s || 0)}`;
  const img = el("img", { class: "thumb", alt: "", width: 48, height: 48,
    src: event.thumbnail ? `data:image/jpeg;base64,${event.thumbnail}` : thumbnailUrl(id) });
  img.addEventListener("error", () => img.classList.add("missing"), { once: true });
  const item = el("li", { class: "event", "data-type": event.type, "data-event-person": id,
                          "data-camera": event.camera },
    img,
    el("span", { class: "text" },
       el("button", { type: "button", class: "link who", "data-open": id }, displayName(id)),
       ` ${what} on `, el("span", { class: "cam" }, event.camera)),
    el("time", { datetime: time.toISOString(), title: time.toLocaleString() }, fmtTime(time)));
  applyFilter(item);
  const feed = $("#feed");
  feed.prepend(item);
  while (feed.children.length > FEED_MAX) feed.lastElementChild.remove();
}

function refreshFeedNames() {
  for (const who of document.querySelectorAll("#feed .who")) {
    who.textContent = displayName(who.dataset.open);
  }
}

// ---------- people ----------

function lastSeenOf(person) {
  const live = state.lastSeen.get(person.id);
  const stored = person.last_seen ? new Date(person.last_seen) : null;
  return live && (!stored || live > stored) ? live : stored;
}

function renderPeople() {
  const box = $("#people");
  if (state.people.size) $("#people .empty")?.remove();
  const people = [...state.people.values()].sort((a, b) =>
    (lastSeenOf(b) || 0) - (lastSeenOf(a) || 0) || personNumber(b.id) - personNumber(a.id));
  const wanted = new Set(people.map((p) => p.id));
  for (const tile of box.querySelectorAll(".person")) {
    if (!wanted.has(tile.dataset.person)) tile.remove();
  }
  let previous = null;
  for (const person of people) {
    let tile = box.querySelector(`.person[data-person="${CSS.escape(person.id)}"]`);
    if (!tile) {
      const img = el("img", { class: "thumb", alt: "", width: 96, height: 96 });
      img.addEventListener("error", () => img.classList.add("missing"));
      tile = el("button", { type: "button", class: "person", "data-person": person.id },
        img, el("span", { class: "name" }), el("span", { class: "id" }),
        el("span", { class: "present" }), el("span", { class: "seen" }),
        el("span", { class: "total" }));
      tile.addEventListener("click", () => openPerson(person.id));
    }
    const img = tile.querySelector("img");
    const src = thumbnailUrl(person.id);
    if (img.getAttribute("src") !== src) { img.classList.remove("missing"); img.src = src; }
    tile.querySelector(".name").textContent = person.name || "unnamed";
    tile.classList.toggle("unnamed", !person.name);
    tile.querySelector(".id").textContent = person.id;
    const on = [...(state.present.get(person.id) || [])];
    tile.classList.toggle("is-present", on.length > 0);
    tile.querySelector(".present").textContent = on.length ? `on ${on.join(", ")} now` : "";
    const seen = lastSeenOf(person);
    tile.querySelector(".seen").textContent = seen ? `last seen ${fmtAgo(seen)}` : "never seen";
    tile.querySelector(".total").textContent = `seen ${fmtDuration(person.seen_s || 0)} in all`;
    tile.setAttribute("aria-label",
      `${person.name || "unnamed"} (${person.id}), ${on.length ? "present now" : "last seen " + (seen ? fmtAgo(seen) : "never")}`);
    const expected = previous ? previous.nextElementSibling : box.firstElementChild;
    if (expected !== tile) {
      if (previous) previous.after(tile); else box.prepend(tile);
    }
    previous = tile;
  }
  const select = $("#filter-person");
  for (const person of people) {
    addOption(select, person.id, person.name ? `${person.name} (${person.id})` : person.id);
  }
  for (const option of [...select.options]) {
    if (option.value && !wanted.has(option.value)) option.remove();
  }
  refreshFeedNames();
}

async function refreshPeople() {
  try {
    const people = await api("/api/persons");
    state.people = new Map(people.map((p) => [p.id, p]));
    renderPeople();
  } catch (error) {
    if (!(error instanceof TypeError)) say(`Could not load the people: ${error.message}`, true);
  }
}
const refreshPeopleSoon = debounce(refreshPeople, 250);
const refreshPeopleThrottled = throttle(refreshPeople, 4000);

// ---------- events ----------

function handle(event) {
  const key = `${event.seq}|${event.time}|${event.type}`;
  if (state.seen.has(key)) return;
  state.seen.add(key);
  if (state.seen.size > 5000) state.seen = new Set([...state.seen].slice(-2000));
  const type = event.type;
  state.log.push({ type, person: event.person, camera: event.camera, name: event.name });
  if (state.log.length > 200) state.log.shift();
  if (type === "camera.status") {
    const camera = { ...(state.cameras.get(event.camera) || { name: event.camera }),
                     status: event.status, reason: event.reason };
    state.cameras.set(event.camera, camera);
    renderCamera(camera);
    if (event.status === "stopped" || event.status === "failed") {
      for (const cameras of state.present.values()) cameras.delete(event.camera);
      renderPeople();
    }
  } else if (type.startsWith("person.")) {
    const id = event.person;
    if (!id) return;
    const cameras = state.present.get(id) || new Set();
    if (type === "person.left") cameras.delete(event.camera);
    else cameras.add(event.camera);
    state.present.set(id, cameras);
    state.lastSeen.set(id, new Date(type === "person.left" ? event.end : event.captured_at || event.time));
    feedItem(event);
    if (!state.people.has(id)) refreshPeopleSoon();
    else { renderPeople(); refreshPeopleThrottled(); }
    if (state.open === id && type !== "person.updated") reloadPerson();
  } else if (type.startsWith("identity.")) {
    const id = event.person;
    if (type === "identity.renamed" && state.people.has(id)) {
      state.people.get(id).name = event.name;
      renderPeople();
    }
    if (type === "identity.deleted" || type === "identity.merged") {
      const gone = type === "identity.deleted" ? id : event.merged;
      state.people.delete(gone);
      state.present.delete(gone);
      renderPeople();
      if (state.open === gone) {
        if (type === "identity.merged") openPerson(id);
        else { $("#person-dialog").close(); say(`${gone} was removed from the gallery.`); }
      }
    }
    refreshPeopleSoon();
    if (state.open && (state.open === id || state.open === event.new_person)) reloadPerson();
  } else if (type === "events.dropped") {
    say(`${event.dropped} events were missed (this page fell behind); refreshing.`);
    refreshPeopleSoon();
  }
}

// ---------- the person view ----------

async function openPerson(id) {
  state.open = id;
  const dialog = $("#person-dialog");
  $("#person-title").textContent = displayName(id);
  $("#person-body").replaceChildren(el("p", {}, "Loading…"));
  if (!dialog.open) dialog.showModal();
  await reloadPerson();
}

const reloadPerson = debounce(async () => {
  const id = state.open;
  if (!id) return;
  try {
    renderPerson(await api(`/api/persons/${encodeURIComponent(id)}`));
  } catch (error) {
    $("#person-body").replaceChildren(el("p", { class: "error" }, error.message));
  }
}, 150);

function renderTimeline(appearances) {
  const groups = new Map();
  for (const a of appearances) {
    if (!groups.has(a.source)) groups.set(a.source, []);
    groups.get(a.source).push(a);
  }
  const now = Date.now() / 1000;
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

function renderPerson(person) {
  if (person.id !== state.open) return;
  // A reload (the person came or went) must not undo what the user was choosing or typing.
  const body = $("#person-body");
  const ticked = new Set([...body.querySelectorAll("input[type=checkbox]:checked")]
    .map((input) => `${input.name}:${input.value}`));
  const typing = document.activeElement?.id === "rename-input" ? document.activeElement.value : null;
  $("#person-title").textContent = person.name ? `${person.name} (${person.id})` : person.id;
  const rename = el("form", { id: "rename-form", class: "inline" },
    el("label", {}, "Name ", el("input", { id: "rename-input", name: "name", value: person.name || "",
                                          autocomplete: "off" })),
    el("button", { type: "submit", id: "rename-submit" }, "Rename"),
    el("button", { type: "button", id: "rename-clear", class: "secondary" }, "Clear name"));
  rename.addEventListener("submit", (event) => {
    event.preventDefault();
    const name = rename.querySelector("input").value.trim();
    act(`/api/persons/${person.id}`, "PATCH", { name: name || null }, `Renamed ${person.id}.`);
  });
  rename.querySelector("#rename-clear").addEventListener("click",
    () => act(`/api/persons/${person.id}`, "PATCH", { name: null }, `Cleared the name of ${person.id}.`));

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
    const picked = (name) => [...$("#person-body").querySelectorAll(`input[name=${name}]:checked`)]
      .map((input) => Number(input.value));
    const exemplars = picked("exemplar"), chosen = picked("appearance");
    if (!exemplars.length && !chosen.length) { say("Select faces or appearances to split off first.", true); return; }
    act(`/api/persons/${person.id}/split`, "POST", { exemplars, appearances: chosen }, `Split ${person.id}.`);
  });

  const others = [...state.people.values()].filter((p) => p.id !== person.id);
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
    if (!confirm(`Merge ${displayName(other)} (${other}) into ${displayName(person.id)} (${person.id})? ${other} disappears.`)) return;
    act(`/api/persons/${person.id}/merge`, "POST", { other }, `Merged ${other} into ${person.id}.`);
  });

  const forget = el("button", { type: "button", id: "forget-button", class: "danger" }, "Forget this person…");
  forget.addEventListener("click", () => {
    if (!confirm(`Forget ${displayName(person.id)} (${person.id})? Their faces and history are erased for good.`)) return;
    act(`/api/persons/${person.id}/forget`, "POST", {}, `${person.id} was forgotten.`);
  });

  $("#person-body").replaceChildren(
    rename, facts,
    el("h3", {}, "Timeline"), renderTimeline(person.appearance_list),
    faces, appearances, el("div", { class: "actions" }, split),
    el("h3", {}, "Merge or forget"), merge, el("div", { class: "actions" }, forget));
  for (const input of body.querySelectorAll("input[type=checkbox]")) {
    input.checked = ticked.has(`${input.name}:${input.value}`);
  }
  if (typing !== null) {
    const input = $("#rename-input");
    input.value = typing;
    input.focus();
  }
}

async function act(path, method, body, done) {
  try {
    await api(path, { method, body });
    say(done);
  } catch (error) {
    say(error.message, true);
  }
}

// ---------- enrolment ----------

function readBase64(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).replace(/^data:[^,]*,/, ""));
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

$("#enroll-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  const files = [...$("#enroll-photos").files];
  const name = $("#enroll-name").value.trim();
  if (!files.length) { say("Choose at least one photo.", true); return; }
  const button = form.querySelector("button");
  button.disabled = true;
  try {
    const photos = await Promise.all(files.map(readBase64));
    const created = await api("/api/persons", { method: "POST", body: { name: name || null, photos } });
    say(`Enrolled ${name} as ${created.person}.`);
    form.reset();
  } catch (error) {
    say(`Enrolment failed: ${error.message}`, true);
  } finally {
    button.disabled = false;
  }
});

// ---------- the connection ----------

let attempt = 0;
let socket = null;

async function connect() {
  setConnection("connecting", "connecting…");
  try {
    await refreshPeople0();
  } catch (error) {
    return retry();
  }
  refreshCameras();
  const url = withToken("/events", { replay: 100 });
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  socket = new WebSocket(url);
  socket.onopen = () => {
    attempt = 0;
    setConnection("connected", "connected — live");
    refreshPeopleSoon();
  };
  socket.onmessage = (message) => {
    try { handle(JSON.parse(message.data)); } catch (error) { console.error(error); }
  };
  socket.onclose = () => { socket = null; retry(); };
}

async function refreshPeople0() {
  const people = await api("/api/persons");   // throws TypeError when the service is away
  state.people = new Map(people.map((p) => [p.id, p]));
  renderPeople();
}

function retry() {
  const delay = Math.min(10, 0.5 * 2 ** attempt) * (0.5 + Math.random() * 0.5);
  attempt += 1;
  const until = Date.now() + delay * 1000;
  const tick = () => {
    const left = Math.ceil((until - Date.now()) / 1000);
    if (left <= 0) { connect(); return; }
    setConnection("disconnected", `disconnected — reconnecting in ${left} s…`);
    setTimeout(tick, Math.min(1000, until - Date.now()));
  };
  setConnection("disconnected", "disconnected — reconnecting…");
  setTimeout(tick, 0);
}

// ---------- start ----------

$("#filter-camera").addEventListener("change", () => document.querySelectorAll("#feed .event").forEach(applyFilter));
$("#filter-person").addEventListener("change", () => document.querySelectorAll("#feed .event").forEach(applyFilter));
$("#feed").addEventListener("click", (event) => {
  const button = event.target.closest("[data-open]");
  if (button) openPerson(button.dataset.open);
});
$("#person-dialog").addEventListener("close", () => { state.open = null; $("#person-message").hidden = true; });
setInterval(() => { if (socket) refreshCameras(); }, 2000);
setInterval(() => { if (socket) { refreshPeople(); } else renderPeople(); }, 15000);
window.facestream = { state, askToken };  // for debugging in the console
connect();
