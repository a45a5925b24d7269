// Pure questions asked of the store's state by the views.
import { fmtDuration, personNumber } from "./format.js";

/** The person's name, or their ID while they have none. */
export function displayName(state, id) {
  const person = state.people[id];
  return person && person.name ? person.name : id;
}

/** "Ada (p3)", or "p3" while unnamed; `name` (what an event said) stands in for a person the
 * gallery's list does not have yet. */
export function labelOf(state, id, name = null) {
  const person = state.people[id];
  const known = person ? person.name : name;
  return known ? `${known} (${id})` : id;
}

/** Epoch ms of the person's newest sighting: live events or the gallery, whichever is later. */
export function lastSeenOf(state, id) {
  const live = state.lastSeen[id] ?? null;
  const person = state.people[id];
  const stored = person && person.last_seen ? Date.parse(person.last_seen) : null;
  if (live === null) return stored;
  return stored === null || live > stored ? live : stored;
}

/** The cameras the person is on now, by name. */
export function presentOn(state, id) {
  return Object.keys(state.present[id] || {}).sort();
}

/** The people, the most recently seen first, then the newest ID first. */
export function orderedPeople(state) {
  return Object.values(state.people).sort((a, b) =>
    (lastSeenOf(state, b.id) || 0) - (lastSeenOf(state, a.id) || 0)
    || personNumber(b.id) - personNumber(a.id));
}

/** Whether a feed entry passes the page's camera and person filters. */
export function matchesFilter(entry, filter) {
  return !(filter.camera && entry.camera !== filter.camera)
    && !(filter.person && entry.person !== filter.person);
}

/** What happened, in words, after the person's name (and before " on CAMERA"). */
export function describe(entry) {
  switch (entry.type) {
    case "person.appeared": return entry.new ? "appeared (new)" : "appeared";
    case "person.updated": return "still seen";
    case "person.left": return `left after ${fmtDuration(entry.duration_s || 0)}`;
    case "identity.renamed": return entry.name ? `was renamed “${entry.name}”` : "lost their name";
    case "identity.merged": return `took over ${entry.merged} (merged)`;
    case "identity.split": return `was split: some faces are now ${entry.new_person}`;
    case "identity.deleted": return entry.forgotten ? "was forgotten" : "was removed";
    case "identity.created": return "was enrolled";
    case "identity.rejected": return "was rejected";
    default: return entry.type;
  }
}
