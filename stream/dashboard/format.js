// Pure formatting of durations, times and person IDs.

/** "42 s", "3 min 5 s", "2 h 10 min". */
export function fmtDuration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** The time of day of a Date, to the second, in the reader's locale. */
export function fmtTime(date) {
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

/** How long before `now` (epoch ms) the epoch-ms time `then` was, in words. */
export function fmtAgo(then, now) {
  const s = (now - then) / 1000;
  if (s < 5) return "just now";
  if (s < 3600) return `${fmtDuration(s)} ago`;
  if (s < 86400) return `at ${fmtTime(new Date(then))}`;
  return new Date(then).toLocaleString();
}

/** The number in a person ID ("p12" -> 12), 0 when there is none. */
export function personNumber(id) {
  return Number(String(id).replace(/\D/g, "")) || 0;
}
