import assert from "node:assert/strict";
import { test } from "node:test";

import { describe, displayName, labelOf, lastSeenOf, matchesFilter, orderedPeople, presentOn }
  from "../../stream/dashboard/select.js";
import { apply, initialState } from "../../stream/dashboard/store.js";
import { stamped } from "./helpers.mjs";

const state = [
  { type: "rest.persons", people: [
    { id: "p2", name: "Ada", last_seen: "2026-12-01T09:00:00Z" },
    { id: "p10", name: null, last_seen: "2026-12-01T09:00:00Z" },
    { id: "p3", name: null, last_seen: null },
    { id: "p1", name: null, last_seen: "2026-12-01T08:00:00Z" }] },
  stamped({ type: "person.appeared", person: "p1", camera: "cam2",
            captured_at: "2026-12-01T10:00:00Z" }),
  stamped({ type: "person.appeared", person: "p1", camera: "cam1",
            captured_at: "2026-12-01T10:00:01Z" }),
].reduce(apply, initialState());

test("people are ordered by last sighting, live or stored, then newest ID; never seen last", () => {
  assert.deepEqual(orderedPeople(state).map((p) => p.id), ["p1", "p10", "p2", "p3"]);
});

test("last seen is the later of the live events and the gallery", () => {
  assert.equal(lastSeenOf(state, "p1"), Date.parse("2026-12-01T10:00:01Z"));
  assert.equal(lastSeenOf(state, "p2"), Date.parse("2026-12-01T09:00:00Z"));
  assert.equal(lastSeenOf(state, "p3"), null);
});

test("names fall back to the ID; present cameras are listed by name", () => {
  assert.equal(displayName(state, "p2"), "Ada");
  assert.equal(displayName(state, "p3"), "p3");
  assert.equal(displayName(state, "p99"), "p99");
  assert.deepEqual(presentOn(state, "p1"), ["cam1", "cam2"]);
  assert.deepEqual(presentOn(state, "p2"), []);
});

test("the feed's filters match camera and person, empty meaning all", () => {
  const entry = { person: "p1", camera: "cam1" };
  assert.equal(matchesFilter(entry, { camera: "", person: "" }), true);
  assert.equal(matchesFilter(entry, { camera: "cam1", person: "p1" }), true);
  assert.equal(matchesFilter(entry, { camera: "cam2", person: "" }), false);
  assert.equal(matchesFilter(entry, { camera: "", person: "p2" }), false);
  assert.equal(matchesFilter({ person: "p1", camera: null }, { camera: "cam1", person: "" }), false);
});

test("each kind of feed entry says what happened", () => {
  assert.equal(describe({ type: "person.appeared", new: true }), "appeared (new)");
  assert.equal(describe({ type: "person.appeared", new: false }), "appeared");
  assert.equal(describe({ type: "person.updated" }), "still seen");
  assert.equal(describe({ type: "person.left", duration_s: 75 }), "left after 1 min 15 s");
  assert.equal(describe({ type: "identity.renamed", name: "Ada" }), "was renamed “Ada”");
  assert.equal(describe({ type: "identity.renamed", name: null }), "lost their name");
  assert.equal(describe({ type: "identity.merged", merged: "p4" }), "took over p4 (merged)");
  assert.match(describe({ type: "identity.split", new_person: "p7" }), /p7/);
  assert.equal(describe({ type: "identity.deleted", forgotten: true }), "was forgotten");
  assert.equal(describe({ type: "identity.deleted", forgotten: false }), "was removed");
  assert.equal(describe({ type: "identity.created" }), "was enrolled");
});

test("labels put the name beside the ID; an event's name stands in for someone not listed", () => {
  assert.equal(labelOf(state, "p2"), "Ada (p2)");
  assert.equal(labelOf(state, "p3"), "p3");
  assert.equal(labelOf(state, "p3", "Eve"), "p3", "the list knows p3 is unnamed");
  assert.equal(labelOf(state, "p99", "Eve"), "Eve (p99)");
  assert.equal(labelOf(state, "p99"), "p99");
});
