// The live event stream: one /events WebSocket (with the token), reopened after a capped,
// jittered backoff whenever it closes.
import { withToken } from "./api.js";

/** Seconds to wait before reconnect attempt `attempt` (0, 1, …): doubling from 0.5 s up to
 * 10 s, then scaled by a random factor between 0.5 and 1 so that pages do not return at once. */
export function backoff(attempt, random) {
  return Math.min(10, 0.5 * 2 ** attempt) * (0.5 + random * 0.5);
}

/**
 * Keeps the socket open until the page goes. Before each attempt `prepare()` runs (it throws
 * while the service is away); `onEvent(event)` gets every event, `onOpen()` each (re)connection
 * and `onState(kind, text)` the connection's state for the banner. Returns `isOpen()`.
 */
export function connectLive({ replay, prepare, onOpen, onEvent, onState }) {
  let attempt = 0;
  let socket = null;

  async function connect() {
    onState("connecting", "connecting…");
    try {
      await prepare();
    } catch {
      retry();
      return;
    }
    const url = withToken("/events", { replay });
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(url);
    socket.onopen = () => {
      attempt = 0;
      onState("connected", "connected — live");
      onOpen();
    };
    socket.onmessage = (message) => {
      // A page error must not end the stream: it is reported, and the next event is handled.
      try { onEvent(JSON.parse(message.data)); } catch (error) { reportError(error); }
    };
    socket.onclose = () => { socket = null; retry(); };
  }

  function retry() {
    const until = Date.now() + backoff(attempt, Math.random()) * 1000;
    attempt += 1;
    const tick = () => {
      const left = Math.ceil((until - Date.now()) / 1000);
      if (left <= 0) { connect(); return; }
      onState("disconnected", `disconnected — reconnecting in ${left} s…`);
      setTimeout(tick, Math.min(1000, until - Date.now()));
    };
    onState("disconnected", "disconnected — reconnecting…");
    setTimeout(tick, 0);
  }

  connect();
  return { isOpen: () => socket !== null };
}
