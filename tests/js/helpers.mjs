// Shared by the dashboard's node tests: frozen states, so that a store that changes its input
// throws instead of passing.

export function deepFreeze(value) {
  if (value && typeof value === "object" && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

let seq = 0;

/** An event as the service sends it: stamped with a fresh seq and a time. */
export function stamped(event, time = "2026-12-01T10:00:00.000Z") {
  seq += 1;
  return { schema: 1, seq, time, ...event };
}
