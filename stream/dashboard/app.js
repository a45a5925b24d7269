// facestream dashboard: the wiring. Every change goes through dispatch(): the store's pure
// apply() makes the new state, the views render what changed, and react() asks the REST API
// for what an event made stale.
import { api, ApiError } from "./api.js";
import { connectLive } from "./live.js";
import { apply, initialState } from "./store.js";
import { renderCameras } from "./views/cameras.js";
import { renderFeed } from "./views/feed.js";
import { renderPeople } from "./views/people.js";
import { renderPersonView } from "./views/person.js";
import { renderConnection, renderMissed, say } from "./views/status.js";

let state = initialState();

function dispatch(event) {
  const before = state;
  state = apply(state, event);
  render(before, state);
  react(before, state, event);
}

function render(before, after, all = false) {
  const changed = (...keys) => all || keys.some((key) => before[key] !== after[key]);
  if (changed("connection")) renderConnection(after);
  if (changed("missed")) renderMissed(after);
  if (changed("cameras")) renderCameras(after);
  if (changed("people", "present", "lastSeen")) renderPeople(after, Date.now(), openPerson);
  if (changed("feed", "filter", "people")) renderFeed(after);
  if (changed("open", "detail")) renderPersonView(after, actions, Date.now() / 1000);
}

function react(before, after, event) {
  const type = String(event.type);
  if (type === "page.open" || (after.open && after.open !== before.open)) reloadPerson();
  if (after.seen === before.seen) return;  // not an event of the service, or a replayed one
  const id = event.person;
  if (type.startsWith("person.") && id) {
    // A name the event changed is checked with the gallery at once (a replayed event may be
    // older than the name the page had).
    const renamed = id in before.people && before.people[id].name !== after.people[id]?.name;
    if (!(id in before.people) || renamed) refreshPeopleSoon(); else refreshPeopleThrottled();
    if (after.open === id && type !== "person.updated") reloadPerson();
  } else if (type.startsWith("identity.")) {
    refreshPeopleSoon();
    if (type === "identity.deleted" && before.open === id) say(`${id} was removed from the gallery.`);
    if (after.open && (after.open === id || after.open === event.new_person)) reloadPerson();
  } else if (type === "events.dropped") {
    say(`${event.dropped} events were missed (this page fell behind); refreshing.`);
    refreshPeopleSoon();
  }
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

// ---------- the REST API ----------

async function loadPeople() {
  dispatch({ type: "rest.persons", people: await api("/api/persons") });
}

async function refreshPeople() {
  try {
    await loadPeople();
  } catch (error) {
    if (!(error instanceof TypeError)) say(`Could not load the people: ${error.message}`, true);
  }
}
const refreshPeopleSoon = debounce(refreshPeople, 250);
const refreshPeopleThrottled = throttle(refreshPeople, 4000);

async function refreshCameras() {
  if (!state.camerasApi) return;
  try {
    dispatch({ type: "rest.cameras", cameras: await api("/api/cameras") });
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) dispatch({ type: "rest.no-cameras" });
  }
}

const reloadPerson = debounce(async () => {
  const id = state.open;
  if (!id) return;
  try {
    dispatch({ type: "rest.person", person: await api(`/api/persons/${encodeURIComponent(id)}`) });
  } catch (error) {
    dispatch({ type: "rest.person", person: { id, error: error.message } });
  }
}, 150);

function openPerson(id) {
  dispatch({ type: "page.open", person: id });
}

async function act(path, method, body, done) {
  try {
    await api(path, { method, body });
    say(done);
  } catch (error) {
    say(error.message, true);
  }
}

const actions = {
  rename: (id, name) => act(`/api/persons/${id}`, "PATCH", { name },
    name ? `Renamed ${id}.` : `Cleared the name of ${id}.`),
  split: (id, exemplars, appearances) => {
    if (!exemplars.length && !appearances.length) {
      say("Select faces or appearances to split off first.", true);
      return;
    }
    act(`/api/persons/${id}/split`, "POST", { exemplars, appearances }, `Split ${id}.`);
  },
  merge: async (id, other) => {
    const path = `/api/persons/${id}/merge`;
    try {
      await api(path, { method: "POST", body: { other } });
      say(`Merged ${other} into ${id}.`);
    } catch (error) {
      // Two people seen on screen together (409): merged only if the user insists.
      if (error instanceof ApiError && error.status === 409
          && confirm(`${error.message}. Merge anyway?`)) {
        act(path, "POST", { other, force: true }, `Merged ${other} into ${id}.`);
      } else {
        say(error.message, true);
      }
    }
  },
  forget: (id) => act(`/api/persons/${id}/forget`, "POST", {}, `${id} was forgotten.`),
};

// ---------- enrolment ----------

function readBase64(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).replace(/^data:[^,]*,/, ""));
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

const $ = (selector) => document.querySelector(selector);

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

// ---------- start ----------

for (const [select, key] of [["#filter-camera", "camera"], ["#filter-person", "person"]]) {
  $(select).addEventListener("change", (event) =>
    dispatch({ type: "page.filter", filter: { [key]: event.target.value } }));
}
$("#feed").addEventListener("click", (event) => {
  const button = event.target.closest("[data-open]");
  if (button) openPerson(button.dataset.open);
});
$("#person-dialog").addEventListener("close", () => {
  $("#person-message").hidden = true;
  if (state.open) dispatch({ type: "page.close" });
});

render(state, state, true);
const live = connectLive({
  replay: 100,
  prepare: async () => {
    await loadPeople();  // throws a TypeError while the service is away
    refreshCameras();
  },
  onOpen: refreshPeopleSoon,
  onEvent: dispatch,
  onState: (kind, text) => dispatch({ type: "page.connection", state: kind, text }),
});
setInterval(() => { if (live.isOpen()) refreshCameras(); }, 2000);
setInterval(() => {
  if (live.isOpen()) refreshPeople(); else renderPeople(state, Date.now(), openPerson);
}, 15000);
