import assert from "node:assert/strict";
import { test } from "node:test";

import { apply, FEED_MAX, initialState } from "../../stream/dashboard/store.js";
import { deepFreeze, stamped } from "./helpers.mjs";

const T0 = "2026-12-01T10:00:00.000Z";
const T5 = "2026-12-01T10:00:05.000Z";
const T12 = "2026-12-01T10:00:12.000Z";

/** Applies the events in turn, each to a frozen state (apply must not change its input). */
function run(events, state = initialState()) {
  return events.reduce((current, event) => apply(deepFreeze(current), event), state);
}

const persons = (...people) => ({ type: "rest.persons", people });
const summary = (id, extra = {}) => ({ id, name: null, exemplars: 2, seen_s: 10,
                                       appearances: 1, last_seen: null, ...extra });
const appeared = (person, camera, at, extra = {}) => stamped(
  { type: "person.appeared", person, camera, new: false, captured_at: at, thumbnail: "AAA", ...extra }, at);
const left = (person, camera, start, end, extra = {}) => stamped(
  { type: "person.left", person, camera, start, end, ...extra }, end);

test("a past appearance told late does not end the one open on the camera", () => {
  const T3 = "2026-12-01T10:00:03.000Z", T4 = "2026-12-01T10:00:04.000Z";
  const state = run([appeared("p1", "cam1", T5), appeared("p1", "cam1", T0),
                     left("p1", "cam1", T3, T4)]);
  assert.deepEqual(state.present, { p1: { cam1: Date.parse(T5) } });
  assert.deepEqual(state.feed.map((entry) => entry.type),
                   ["person.appeared", "person.left", "person.appeared"]);  // by the time shown
  const after = run([left("p1", "cam1", T5, T12)], state);
  assert.deepEqual(after.present, { p1: {} });
});

test("a new page shows nobody, no camera, nothing missed and is connecting", () => {
  const state = initialState();
  assert.deepEqual(state.people, {});
  assert.deepEqual(state.cameras, {});
  assert.deepEqual(state.feed, []);
  assert.equal(state.missed, 0);
  assert.equal(state.connection.state, "connecting");
  assert.equal(state.open, null);
});

test("appeared opens an appearance on the camera and tops the feed", () => {
  const state = run([appeared("p1", "cam1", T0, { new: true })]);
  assert.deepEqual(state.present, { p1: { cam1: Date.parse(T0) } });
  assert.equal(state.lastSeen.p1, Date.parse(T0));
  assert.equal(state.feed.length, 1);
  assert.deepEqual(
    { type: state.feed[0].type, person: state.feed[0].person, camera: state.feed[0].camera,
      new: state.feed[0].new, thumbnail: state.feed[0].thumbnail, time: state.feed[0].time },
    { type: "person.appeared", person: "p1", camera: "cam1", new: true, thumbnail: "AAA",
      time: Date.parse(T0) });
});

test("appeared then left closes the appearance with its duration", () => {
  const state = run([appeared("p1", "cam1", T0), appeared("p1", "cam2", T0),
                     left("p1", "cam1", T0, T12, { duration_s: 12 })]);
  assert.deepEqual(state.present.p1, { cam2: Date.parse(T0) }, "still on cam2, not on cam1");
  const [entry] = state.feed;
  assert.equal(entry.type, "person.left");
  assert.equal(entry.camera, "cam1");
  assert.equal(entry.start, Date.parse(T0));
  assert.equal(entry.end, Date.parse(T12));
  assert.equal(entry.duration_s, 12);
  assert.equal(state.lastSeen.p1, Date.parse(T12));
});

test("a left without duration_s gets it from the appearance that opened it", () => {
  const state = run([appeared("p1", "cam1", T0),
                     stamped({ type: "person.left", person: "p1", camera: "cam1", end: T12 }, T12)]);
  assert.equal(state.feed[0].duration_s, 12);
  assert.deepEqual(state.present.p1, {});
});

test("updated keeps the appearance's start and moves last seen on", () => {
  const state = run([appeared("p1", "cam1", T0),
                     stamped({ type: "person.updated", person: "p1", camera: "cam1",
                               captured_at: T5, thumbnail: null }, T5)]);
  assert.deepEqual(state.present.p1, { cam1: Date.parse(T0) });
  assert.equal(state.lastSeen.p1, Date.parse(T5));
  assert.equal(state.feed[0].type, "person.updated");
  assert.equal(state.feed.length, 2);
});

test("an updated heard without its appeared (page opened late) still opens the appearance", () => {
  const state = run([stamped({ type: "person.updated", person: "p3", camera: "cam1",
                               captured_at: T5 }, T5)]);
  assert.deepEqual(state.present.p3, { cam1: Date.parse(T5) });
});

test("a replayed event (same seq, time and type) is applied once", () => {
  const event = appeared("p1", "cam1", T0);
  const once = run([event]);
  assert.equal(run([event], once), once);
  assert.equal(run([event, { ...event }]).feed.length, 1);
});

test("the feed keeps the newest FEED_MAX entries, newest first", () => {
  const events = Array.from({ length: FEED_MAX + 5 }, (_, i) =>
    appeared(`p${i}`, "cam1", new Date(Date.parse(T0) + i * 1000).toISOString()));
  const state = run(events);
  assert.equal(state.feed.length, FEED_MAX);
  assert.equal(state.feed[0].person, `p${FEED_MAX + 4}`);
  assert.equal(state.feed.at(-1).person, "p5");
});

test("camera.status sets the camera's status; a stopped camera has nobody on it", () => {
  let state = run([{ type: "rest.cameras", cameras: [{ name: "cam1", url: "rtsp://x", analyzed_fps: 4 }] },
                   appeared("p1", "cam1", T0), appeared("p1", "cam2", T0),
                   stamped({ type: "camera.status", camera: "cam1", status: "streaming", reason: null })]);
  assert.deepEqual(state.cameras.cam1,
                   { name: "cam1", url: "rtsp://x", analyzed_fps: 4, status: "streaming", reason: null });
  assert.deepEqual(Object.keys(state.present.p1).sort(), ["cam1", "cam2"]);
  state = run([stamped({ type: "camera.status", camera: "cam1", status: "failed", reason: "gone" })], state);
  assert.equal(state.cameras.cam1.status, "failed");
  assert.equal(state.cameras.cam1.reason, "gone");
  assert.deepEqual(Object.keys(state.present.p1), ["cam2"]);
});

test("camera documents from the REST API merge into what the events said", () => {
  const state = run([stamped({ type: "camera.status", camera: "cam1", status: "connecting" }),
                     { type: "rest.cameras", cameras: [{ name: "cam1", frames_dropped: 3 }] }]);
  assert.equal(state.cameras.cam1.status, "connecting");
  assert.equal(state.cameras.cam1.frames_dropped, 3);
  assert.equal(run([{ type: "rest.no-cameras" }]).camerasApi, false);
});

test("events.dropped adds to the visible missed counter", () => {
  const state = run([stamped({ type: "events.dropped", dropped: 7 }, T0),
                     stamped({ type: "events.dropped", dropped: 5 }, T5)]);
  assert.equal(state.missed, 12);
});

test("renamed changes the person's name and is in the feed with it", () => {
  const state = run([persons(summary("p1")),
                     stamped({ type: "identity.renamed", person: "p1", name: "Ada Lovelace" })]);
  assert.equal(state.people.p1.name, "Ada Lovelace");
  assert.equal(state.feed[0].type, "identity.renamed");
  assert.equal(state.feed[0].name, "Ada Lovelace");
  const cleared = run([stamped({ type: "identity.renamed", person: "p1", name: null })], state);
  assert.equal(cleared.people.p1.name, null);
});

test("merged moves the person's history to the one kept", () => {
  const state = run([
    persons(summary("p1", { seen_s: 10, appearances: 1, exemplars: 2 }),
            summary("p2", { seen_s: 5, appearances: 2, exemplars: 3 })),
    appeared("p2", "cam2", T5), left("p2", "cam2", T5, T12, { duration_s: 7 }),
    appeared("p2", "cam3", T12),
    { type: "page.open", person: "p2" }, { type: "page.filter", filter: { person: "p2" } },
    stamped({ type: "identity.merged", person: "p1", merged: "p2" }, T12),
  ]);
  assert.deepEqual(Object.keys(state.people), ["p1"]);
  assert.equal(state.people.p1.seen_s, 15);
  assert.equal(state.people.p1.appearances, 3);
  assert.equal(state.people.p1.exemplars, 5);
  assert.deepEqual(state.present, { p1: { cam3: Date.parse(T12) } });
  assert.equal(state.lastSeen.p1, Date.parse(T12));
  assert.equal(state.lastSeen.p2, undefined);
  assert.deepEqual(state.feed.map((e) => [e.type, e.person]), [
    ["identity.merged", "p1"], ["person.appeared", "p1"], ["person.left", "p1"],
    ["person.appeared", "p1"]]);
  assert.equal(state.feed[0].merged, "p2");
  assert.equal(state.open, "p1", "the view of the merged person shows the one kept");
  assert.equal(state.detail, null);
  assert.equal(state.filter.person, "p1");
});

test("deleted removes the person and closes their view; the feed keeps what happened", () => {
  const state = run([persons(summary("p1"), summary("p2")), appeared("p2", "cam1", T0),
                     { type: "page.open", person: "p2" },
                     { type: "rest.person", person: { id: "p2", exemplar_list: [] } },
                     stamped({ type: "identity.deleted", person: "p2", forgotten: true })]);
  assert.deepEqual(Object.keys(state.people), ["p1"]);
  assert.equal(state.present.p2, undefined);
  assert.equal(state.open, null);
  assert.equal(state.detail, null);
  assert.equal(state.feed[0].type, "identity.deleted");
  assert.equal(state.feed[0].forgotten, true);
  assert.equal(state.feed[1].person, "p2");
});

test("created adds the enrolled person before the gallery is reloaded", () => {
  const state = run([stamped({ type: "identity.created", person: "p9", name: "Grace Hopper",
                               exemplars: 1 })]);
  assert.equal(state.people.p9.name, "Grace Hopper");
  assert.equal(state.people.p9.exemplars, 1);
  assert.equal(state.feed[0].type, "identity.created");
});

test("split and rejected are in the feed; split names the new person", () => {
  const state = run([persons(summary("p1")),
                     stamped({ type: "identity.split", person: "p1", new_person: "p4",
                               exemplars: [3], appearances: [] }),
                     stamped({ type: "identity.rejected", person: "p1", camera: "cam1", tracks: 1 })]);
  assert.deepEqual(state.feed.map((e) => e.type), ["identity.rejected", "identity.split"]);
  assert.equal(state.feed[1].new_person, "p4");
  assert.equal(state.feed[0].camera, "cam1");
  assert.deepEqual(Object.keys(state.people), ["p1"]);
});

test("the gallery's list replaces the people; events of unknown types change nothing", () => {
  let state = run([persons(summary("p1"), summary("p2"))]);
  state = run([persons(summary("p2", { name: "Bo" }))], state);
  assert.deepEqual(state.people, { p2: summary("p2", { name: "Bo" }) });
  assert.equal(run([stamped({ type: "something.else" })], state), state);
});

test("a person's document is kept only while their view is open", () => {
  const doc = { id: "p1", name: null, exemplar_list: [] };
  let state = run([{ type: "page.open", person: "p1" }, { type: "rest.person", person: doc }]);
  assert.equal(state.detail, doc);
  assert.equal(run([{ type: "rest.person", person: { id: "p2" } }], state).detail, doc);
  state = run([{ type: "page.close" }], state);
  assert.equal(state.open, null);
  assert.equal(run([{ type: "rest.person", person: doc }], state).detail, null);
});

test("the connection's state and the filters are the page's own", () => {
  const state = run([{ type: "page.connection", state: "disconnected", text: "disconnected" },
                     { type: "page.filter", filter: { camera: "cam1" } }]);
  assert.deepEqual(state.connection, { state: "disconnected", text: "disconnected" });
  assert.deepEqual(state.filter, { camera: "cam1", person: "" });
});

test("the feed is in the order of the times it shows: a left row goes below later sightings", () => {
  // p1 was last seen at 5 s and is declared gone at 12 s, after p2 appeared at 8 s.
  const T8 = "2026-12-01T10:00:08.000Z";
  const state = run([appeared("p1", "cam1", T0), appeared("p2", "cam1", T8),
                     stamped({ type: "person.left", person: "p1", camera: "cam1", start: T0,
                               end: T5 }, T12)]);
  assert.deepEqual(state.feed.map((e) => [e.type, e.person, e.time]), [
    ["person.appeared", "p2", Date.parse(T8)], ["person.left", "p1", Date.parse(T5)],
    ["person.appeared", "p1", Date.parse(T0)]]);
});

test("person events keep their name and appearance in the feed, and renames reach the people", () => {
  let state = run([persons(summary("p1"), summary("p2", { name: "Bo" })),
                   appeared("p1", "cam1", T0, { name: null, appearance: "cam1-a" })]);
  assert.equal(state.feed[0].name, null);
  assert.equal(state.feed[0].appearance, "cam1-a");
  const before = state.people;
  // Renamed by another process: the page hears no identity.renamed, only the next sighting.
  state = run([stamped({ type: "person.updated", person: "p1", camera: "cam1", name: "Ada",
                         appearance: "cam1-a", captured_at: T5 }, T5)], state);
  assert.equal(state.people.p1.name, "Ada");
  assert.deepEqual(state.people.p2, before.p2);
  assert.equal(state.feed[0].name, "Ada");
  assert.equal(state.feed[0].appearance, "cam1-a");
  state = run([left("p1", "cam1", T0, T12, { name: null, appearance: "cam1-a" })], state);
  assert.equal(state.people.p1.name, null, "the name taken away");
  assert.deepEqual(state.feed.map((e) => e.appearance), ["cam1-a", "cam1-a", "cam1-a"]);
});

test("a sighting that says the name the page has leaves the people as they were", () => {
  const state = run([persons(summary("p2", { name: "Bo" }))]);
  const after = run([appeared("p2", "cam1", T0, { name: "Bo" }),
                     appeared("p9", "cam1", T0, { name: "Cy" })], state);
  assert.equal(after.people, state.people, "the same object: nothing to render");
  assert.equal(after.feed[0].name, "Cy", "someone the list does not have yet keeps theirs");
});

test("an event of an older service (no name field) leaves the name alone", () => {
  const state = run([persons(summary("p1", { name: "Ada" })), appeared("p1", "cam1", T0)]);
  assert.equal(state.people.p1.name, "Ada");
  assert.equal(state.feed[0].name, null);
});
