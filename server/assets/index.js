// The room picker (/chat/).
//
// The Channels tutorial's behaviour: the room-name input has focus on load,
// and Enter or the button goes to /chat/<room>/. Before navigating, the name
// is checked against the room-name rule (chat-protocol's ROOM_NAME_RULE), so
// a bad name gets a friendly message instead of a broken URL. Below, the
// active rooms with their member counts, refreshed while the page is open.
"use strict";

(function () {
  const ROOM_CHARS = /^[A-Za-z0-9._-]+$/;
  const ROOM_MAX = 100;
  const REFRESH_MS = 4000;

    // A server that requires a token gets it in the page's URL (?token=...);
  // it is kept for this tab and passed on to every request the page makes.
  const token = new URLSearchParams(location.search).get("token") || sessionStorage.getItem("chat.token");
  if (token) sessionStorage.setItem("chat.token", token);
  forgetTokenInAddressBar();
  // The token stays out of the address bar and the browser's history
  // (a reload comes back through the server's token page, token.js).
  function forgetTokenInAddressBar() {
    const url = new URL(location.href);
    if (!url.searchParams.has("token")) return;
    url.searchParams.delete("token");
    history.replaceState(history.state, "", url.pathname + url.search + url.hash);
  }
  function withToken(url) {
    return token ? url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token) : url;
  }

  const input = document.querySelector("#room-name-input");
  const submit = document.querySelector("#room-name-submit");
  const error = document.querySelector("#room-name-error");
  const list = document.querySelector("#room-list");

  input.focus();

  // Why `name` is not a usable room name, or null when it is.
  function problemWith(name) {
    if (name === "") return "Type a room name first.";
    if (name.length > ROOM_MAX) {
      return "That name is " + name.length + " characters long; a room name has at most " + ROOM_MAX + ".";
    }
    if (!ROOM_CHARS.test(name)) {
      const bad = [...name].find((c) => !ROOM_CHARS.test(c));
      const shown = /\s/.test(bad) ? "spaces" : "\u201c" + bad + "\u201d";
      let message = "Room names can't contain " + shown + ": use letters, digits, '-', '_' or '.'.";
      const suggestion = name.trim().normalize("NFD").replace(/\p{M}/gu, "")
        .replace(/\s+/g, "-").replace(/[^A-Za-z0-9._-]/g, "").slice(0, ROOM_MAX);
      if (suggestion !== "" && problemWith(suggestion) === null) {
        message += " How about \u201c" + suggestion + "\u201d?";
      }
      return message;
    }
    // Valid for the protocol, but a browser resolves these path segments
    // away, so /chat/../ can never reach the room.
    if (name === "." || name === "..") return "\u201c" + name + "\u201d can't be used as a room name in a browser.";
    return null;
  }

  function showError(message) {
    error.textContent = message;
    error.hidden = false;
    input.setAttribute("aria-invalid", "true");
    input.focus();
  }

  function clearError() {
    error.hidden = true;
    input.removeAttribute("aria-invalid");
  }

  function go() {
    const name = input.value.trim();
    const problem = problemWith(name);
    if (problem !== null) {
      showError(problem);
      return;
    }
    clearError();
    window.location.assign(withToken("/chat/" + name + "/"));
  }

  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.isComposing) {
      event.preventDefault();
      go();
    }
  });
  input.addEventListener("input", clearError);
  submit.addEventListener("click", go);

  // ---- active rooms ----

  function emptyRow(text) {
    const li = document.createElement("li");
    li.className = "room-list-empty";
    li.textContent = text;
    return li;
  }

  function roomRow(room) {
    const li = document.createElement("li");
    const link = document.createElement("a");
    link.href = withToken("/chat/" + encodeURIComponent(room.name) + "/");
    link.className = "room-link";
    const hash = document.createElement("span");
    hash.className = "hash";
    hash.textContent = "#";
    const name = document.createElement("span");
    name.className = "room-link-name";
    name.textContent = room.name;
    const count = document.createElement("span");
    count.className = "count";
    count.textContent = room.members === 1 ? "1 person" : room.members + " people";
    link.append(hash, name, count);
    li.append(link);
    return li;
  }

  let refreshing = false;
  async function refresh() {
    if (refreshing) return;
    refreshing = true;
    try {
      const response = await fetch(withToken("/api/rooms"), { cache: "no-store" });
      if (!response.ok) throw new Error("the server answered " + response.status);
      const { rooms } = await response.json();
      rooms.sort((a, b) => b.members - a.members || a.name.localeCompare(b.name));
      list.replaceChildren(...(rooms.length > 0
        ? rooms.map(roomRow)
        : [emptyRow("No one is chatting right now. Pick a name above to start a room.")]));
    } catch (err) {
      list.replaceChildren(emptyRow("Could not load the active rooms (" + err.message + "); retrying."));
    } finally {
      list.setAttribute("aria-busy", "false");
      refreshing = false;
    }
  }

  refresh();
  setInterval(() => {
    if (!document.hidden) refresh();
  }, REFRESH_MS);
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) refresh();
  });
  // Coming back with the browser's Back button may restore this page from
  // the back/forward cache: show fresh counts, and be ready to type again.
  window.addEventListener("pageshow", (event) => {
    if (event.persisted) {
      refresh();
      input.focus();
    }
  });
})();
