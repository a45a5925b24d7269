// The dashboard's state and the one pure function that changes it: apply(state, event) returns
// a new state for an event of the service (person.*, camera.status, identity.*, events.dropped),
// a REST answer (rest.*) or something done on the page (page.*). No DOM, no network, no clock:
// times come from the events; the input state is never changed.

export const FEED_MAX = 200;
const SEEN_MAX = 2000;

/** The state of a page that has heard nothing yet. */
export function initialState() {
  return {
    connection: { state: "connecting", text: "connecting…" },
    cameras: {},       // name -> camera document (GET /api/cameras, camera.status)
    camerasApi: true,  // false when the service has no /api/cameras
    people: {},        // id -> person summary (GET /api/persons, identity.* events)
    present: {},       // id -> { camera: start (epoch ms) }: the appearances open now
    lastSeen: {},      // id -> epoch ms of the newest person.* event
    feed: [],          // feed entries, newest first, at most FEED_MAX
    seen: [],          // keys of the events applied (a replay after a reconnect repeats them)
    missed: 0,         // events the service dropped for this page (events.dropped)
    filter: { camera: "", person: "" },
    open: null,        // id of the person shown in the person view
    detail: null,      // that person's document (GET /api/persons/{id}) once loaded
  };
}

/** The key that tells a replayed event from a new one. */
export function eventKey(event) {
  return `${event.seq}|${event.time}|${event.type}`;
}

function without(object, key) {
  const { [key]: _, ...rest } = object;
  return rest;
}

function ms(iso) {
  const value = Date.parse(iso);
  return Number.isNaN(value) ? null : value;
}

function later(a, b) {
  return a === undefined || a === null ? b : b === undefined || b === null ? a : Math.max(a, b);
}

/** The new state after `event`; `state` itself is left as it was. */
export function apply(state, event) {
  switch (event.type) {
    case "page.connection":
      return { ...state, connection: { state: event.state, text: event.text } };
    case "page.filter":
      return { ...state, filter: { ...state.filter, ...event.filter } };
    case "page.open":
      return { ...state, open: event.person, detail: null };
    case "page.close":
      return { ...state, open: null, detail: null };
    case "rest.persons":
      return { ...state, people: Object.fromEntries(event.people.map((p) => [p.id, p])) };
    case "rest.person":
      return event.person.id === state.open ? { ...state, detail: event.person } : state;
    case "rest.cameras": {
      const cameras = { ...state.cameras };
      for (const camera of event.cameras) cameras[camera.name] = { ...cameras[camera.name], ...camera };
      return { ...state, cameras };
    }
    case "rest.no-cameras":
      return { ...state, camerasApi: false };
    default:
      return applyServiceEvent(state, event);
  }
}

function applyServiceEvent(state, event) {
  const type = String(event.type);
  const known = type.startsWith("person.") || type.startsWith("identity.")
    || type === "camera.status" || type === "events.dropped";
  if (!known) return state;
  const key = eventKey(event);
  if (state.seen.includes(key)) return state;
  const next = { ...state, seen: [...state.seen.slice(1 - SEEN_MAX), key] };
  if (type === "camera.status") return cameraStatus(next, event);
  if (type === "events.dropped") return { ...next, missed: next.missed + (event.dropped || 0) };
  if (!event.person) return next;
  if (type.startsWith("person.")) return sighting(next, event, key);
  return identityChange(next, event, key);
}

function cameraStatus(state, event) {
  const camera = { ...(state.cameras[event.camera] || { name: event.camera }),
                   status: event.status, reason: event.reason ?? null };
  let present = state.present;
  if (event.status === "stopped" || event.status === "failed") {
    present = Object.fromEntries(Object.entries(present)
      .map(([id, cameras]) => [id, without(cameras, event.camera)]));
  }
  return { ...state, cameras: { ...state.cameras, [event.camera]: camera }, present };
}

function sighting(state, event, key) {
  const id = event.person, camera = event.camera;
  const open = state.present[id] || {};
  const entry = { key, type: event.type, person: id, camera, name: event.name ?? null,
                  appearance: event.appearance ?? null };
  let cameras, seen;
  if (event.type === "person.left") {
    const start = ms(event.start) ?? open[camera] ?? null, end = ms(event.end);
    // A past appearance told late (late recall) ended before the open one began: that one stays.
    const past = end !== null && camera in open && end < open[camera];
    cameras = past ? open : without(open, camera);
    seen = end;
    entry.time = end;
    entry.start = start;
    entry.end = end;
    entry.duration_s = event.duration_s
      ?? (start !== null && end !== null ? (end - start) / 1000 : 0);
  } else {
    seen = ms(event.captured_at || event.time);
    cameras = camera in open ? open : { ...open, [camera]: seen };
    entry.time = seen;
    entry.thumbnail = event.thumbnail || null;
    if (event.type === "person.appeared") entry.new = Boolean(event.new);
  }
  return {
    ...state,
    // The name as the service knows it now: a rename this page did not hear (made by another
    // process) reaches the people with the person's next event.
    people: "name" in event ? named(state.people, id, entry.name) : state.people,
    present: { ...state.present, [id]: cameras },
    lastSeen: { ...state.lastSeen, [id]: later(state.lastSeen[id], seen) },
    feed: addEntry(state.feed, entry),
  };
}

/** `people` with `id` named `name` (the same object when nothing changes). */
function named(people, id, name) {
  if (!(id in people) || people[id].name === name) return people;
  return { ...people, [id]: { ...people[id], name } };
}

function identityChange(state, event, key) {
  const id = event.person;
  const entry = { key, type: event.type, person: id, camera: event.camera ?? null,
                  time: ms(event.time) };
  let next = state;
  switch (event.type) {
    case "identity.renamed":
      entry.name = event.name ?? null;
      next = { ...state, people: named(state.people, id, entry.name) };
      break;
    case "identity.merged":
      entry.merged = event.merged;
      next = merge(state, id, event.merged);
      break;
    case "identity.split":
      entry.new_person = event.new_person;
      break;
    case "identity.deleted":
      entry.forgotten = Boolean(event.forgotten);
      next = forget(state, id);
      break;
    case "identity.created":
      entry.name = event.name ?? null;
      if (!(id in state.people)) {
        next = { ...state, people: { ...state.people, [id]: {
          id, name: entry.name, exemplars: event.exemplars || 0, seen_s: 0, appearances: 0,
          created: event.time, last_seen: null } } };
      }
      break;
    default:
      break;
  }
  return { ...next, feed: addEntry(next.feed, entry) };
}

/** `gone`'s history (time seen, open appearances, feed entries) moves to `keep`. */
function merge(state, keep, gone) {
  const people = without(state.people, gone);
  const a = state.people[keep], b = state.people[gone];
  if (a && b) {
    people[keep] = { ...a,
      seen_s: (a.seen_s || 0) + (b.seen_s || 0),
      appearances: (a.appearances || 0) + (b.appearances || 0),
      exemplars: (a.exemplars || 0) + (b.exemplars || 0),
      last_seen: [a.last_seen, b.last_seen].filter(Boolean).sort().at(-1) ?? null };
  }
  const cameras = { ...(state.present[keep] || {}) };
  for (const [camera, start] of Object.entries(state.present[gone] || {})) {
    cameras[camera] = camera in cameras ? Math.min(cameras[camera], start) : start;
  }
  const present = without(state.present, gone);
  if (Object.keys(cameras).length || keep in state.present) present[keep] = cameras;
  const lastSeen = without(state.lastSeen, gone);
  const seen = later(state.lastSeen[keep], state.lastSeen[gone]);
  if (seen !== undefined && seen !== null) lastSeen[keep] = seen;
  return {
    ...state, people, present, lastSeen,
    feed: state.feed.map((e) => (e.person === gone ? { ...e, person: keep } : e)),
    filter: state.filter.person === gone ? { ...state.filter, person: keep } : state.filter,
    open: state.open === gone ? keep : state.open,
    detail: state.open === gone ? null : state.detail,
  };
}

function forget(state, gone) {
  return {
    ...state,
    people: without(state.people, gone),
    present: without(state.present, gone),
    lastSeen: without(state.lastSeen, gone),
    filter: state.filter.person === gone ? { ...state.filter, person: "" } : state.filter,
    open: state.open === gone ? null : state.open,
    detail: state.open === gone ? null : state.detail,
  };
}

function addEntry(feed, entry) {
  // Newest first by the time each row shows: a "left" row shows the last sighting, which comes
  // before the event itself, so it may go below rows that arrived before it.
  const found = entry.time == null ? 0
    : feed.findIndex((e) => e.time == null || e.time <= entry.time);
  const at = found < 0 ? feed.length : found;
  return [...feed.slice(0, at), entry, ...feed.slice(at)].slice(0, FEED_MAX);
}
