// Small DOM and formatting helpers.

/** An element with attributes and children (strings become text). */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (key === "value" && "value" in node) node.value = value;
    node.setAttribute(key, value === true ? "" : String(value));
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

export function fmtDuration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

export function fmtTime(date) {
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

export function fmtAgo(date) {
  const s = (Date.now() - date.getTime()) / 1000;
  if (s < 5) return "just now";
  if (s < 3600) return `${fmtDuration(s)} ago`;
  if (s < 86400) return `at ${fmtTime(date)}`;
  return date.toLocaleString();
}

export function personNumber(id) {
  return Number(String(id).replace(/\D/g, "")) || 0;
}
