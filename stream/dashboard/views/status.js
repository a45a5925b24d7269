// The connection banner, the missed-events counter and the message line.

export function renderConnection(state) {
  const banner = document.getElementById("connection");
  banner.dataset.state = state.connection.state;
  banner.textContent = state.connection.text;
  document.body.dataset.connection = state.connection.state;
}

export function renderMissed(state) {
  const counter = document.getElementById("missed");
  counter.hidden = state.missed === 0;
  counter.textContent = `${state.missed} event${state.missed === 1 ? "" : "s"} missed`;
  counter.title = "Events the service dropped because this page fell behind; "
    + "the people were reloaded from the gallery.";
}

let messageTimer = 0;

/** Shows a message for a few seconds (in the person view's own line while it is open). */
export function say(text, error = false) {
  const dialog = document.getElementById("person-dialog");
  const box = document.getElementById(dialog.open ? "person-message" : "message");
  box.textContent = text;
  box.classList.toggle("error", error);
  box.hidden = false;
  clearTimeout(messageTimer);
  messageTimer = setTimeout(() => { box.hidden = true; }, 6000);
}
