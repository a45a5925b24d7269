// The service's REST API: the token (kept in sessionStorage), asked for on a 401.

const TOKEN_KEY = "facestream.token";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

/** A URL of the service with the token as ?token= (for <img> and the WebSocket). */
export function withToken(path, extra = {}) {
  const url = new URL(path, location.href);
  const value = token();
  if (value) url.searchParams.set("token", value);
  for (const [key, v] of Object.entries(extra)) url.searchParams.set(key, v);
  return url;
}

/** The URL of a person's best face; `version` changes when their faces do. */
export function thumbnailUrl(id, version) {
  return withToken(`/api/persons/${encodeURIComponent(id)}/thumbnail.jpg`, { v: version }).href;
}

let asking = null;

/** Shows the token form; resolves once a token was entered. */
export function askToken(refused = false) {
  if (asking) return asking;
  const dialog = document.getElementById("token-dialog");
  const form = document.getElementById("token-form");
  const input = document.getElementById("token-input");
  document.getElementById("token-error").hidden = !refused;
  asking = new Promise((resolve) => {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, input.value.trim());
      input.value = "";
      dialog.close();
      asking = null;
      resolve();
    }, { once: true });
  });
  dialog.addEventListener("cancel", (event) => event.preventDefault());
  if (!dialog.open) dialog.showModal();
  input.focus();
  return asking;
}

/** One JSON request; on 401 asks for the token and tries again. */
export async function api(path, { method = "GET", body } = {}) {
  for (;;) {
    const headers = {};
    const value = token();
    if (value) headers.Authorization = `Bearer ${value}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.status === 401) {
      await askToken(Boolean(value));
      continue;
    }
    const text = await response.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch { data = text; }
    if (!response.ok) {
      const message = data && data.error ? data.error : `${response.status} ${response.statusText}`;
      throw new ApiError(response.status, message);
    }
    return data;
  }
}
