import assert from "node:assert/strict";
import { test } from "node:test";

import { fmtAgo, fmtDuration, personNumber } from "../../stream/dashboard/format.js";
import { backoff } from "../../stream/dashboard/live.js";

test("durations read in seconds, then minutes, then hours", () => {
  assert.equal(fmtDuration(0), "0 s");
  assert.equal(fmtDuration(-3), "0 s");
  assert.equal(fmtDuration(59.4), "59 s");
  assert.equal(fmtDuration(59.6), "1 min 0 s");
  assert.equal(fmtDuration(3599), "59 min 59 s");
  assert.equal(fmtDuration(3600 * 2 + 60 * 10 + 5), "2 h 10 min");
});

test("how long ago is measured from the given now", () => {
  const now = Date.parse("2026-12-01T12:00:00Z");
  assert.equal(fmtAgo(now - 2000, now), "just now");
  assert.equal(fmtAgo(now - 90_000, now), "1 min 30 s ago");
  assert.match(fmtAgo(now - 2 * 3600_000, now), /^at /);
});

test("person numbers order p2 before p10", () => {
  assert.equal(personNumber("p10"), 10);
  assert.equal(personNumber("p2"), 2);
  assert.equal(personNumber("nobody"), 0);
});

test("reconnects back off from 0.5 s, doubling, capped at 10 s, jittered to half", () => {
  assert.equal(backoff(0, 1), 0.5);
  assert.equal(backoff(1, 1), 1);
  assert.equal(backoff(3, 1), 4);
  assert.equal(backoff(5, 1), 10);
  assert.equal(backoff(50, 1), 10);
  assert.equal(backoff(5, 0), 5);
  assert.equal(backoff(0, 0.5), 0.375);
});
