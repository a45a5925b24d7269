import assert from "node:assert/strict";
import { test } from "node:test";

import { previewWait } from "../../stream/dashboard/views/cameras.js";

test("no preview is asked for before the camera streams", () => {
  for (const status of ["connecting", "reconnecting", "refused", "failed", "stopped", undefined]) {
    assert.equal(previewWait(status, 0, false), null, status);
  }
});

test("a streaming camera's preview refreshes three times a second, slower when hidden", () => {
  assert.equal(previewWait("streaming", 0, false), 333);
  assert.equal(previewWait("streaming", 0, true), 2000);
});

test("failed previews (no analysed frame yet) back off, doubling up to 30 s", () => {
  assert.deepEqual([1, 2, 3, 4, 5, 6, 7, 20].map((n) => previewWait("streaming", n, false)),
                   [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
});
