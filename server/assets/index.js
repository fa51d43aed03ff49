// The room picker: the tutorial's behaviour (focus, Enter or click goes to
// /chat/<room>/), the room-name rule checked before navigating, and the
// active rooms, refreshed while the page is open.
"use strict";

(function () {
  const ROOM_RULE = /^[A-Za-z0-9._-]{1,100}$/;
  const input = document.querySelector("#room-name-input");
  const submit = document.querySelector("#room-name-submit");
  const error = document.querySelector("#room-name-error");
  const list = document.querySelector("#room-list");

  input.focus();

  function go() {
    const name = input.value.trim();
    if (!ROOM_RULE.test(name)) {
      error.textContent = name === ""
        ? "Type a room name first."
        : "A room name is 1 to 100 characters of letters, digits, '-', '_' or '.' (no spaces).";
      error.hidden = false;
      input.setAttribute("aria-invalid", "true");
      input.focus();
      return;
    }
    error.hidden = true;
    window.location.pathname = "/chat/" + name + "/";
  }

  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter") {
      e.preventDefault();
      go();
    }
  });
  input.addEventListener("input", () => {
    error.hidden = true;
    input.removeAttribute("aria-invalid");
  });
  submit.addEventListener("click", go);
  document.querySelector("#room-form").addEventListener("submit", (e) => {
    e.preventDefault();
    go();
  });

  async function refresh() {
    try {
      const response = await fetch("/api/rooms", { cache: "no-store" });
      if (!response.ok) throw new Error("HTTP " + response.status);
      const { rooms } = await response.json();
      list.replaceChildren();
      if (rooms.length === 0) {
        const li = document.createElement("li");
        li.className = "muted";
        li.textContent = "No one is chatting right now. Start a room!";
        list.append(li);
      }
      for (const room of rooms) {
        const li = document.createElement("li");
        const a = document.createElement("a");
        a.href = "/chat/" + encodeURIComponent(room.name) + "/";
        a.textContent = "#" + room.name;
        const count = document.createElement("span");
        count.className = "count";
        count.textContent = room.members === 1 ? "1 person" : room.members + " people";
        li.append(a, count);
        list.append(li);
      }
    } catch (err) {
      list.replaceChildren();
      const li = document.createElement("li");
      li.className = "muted";
      li.textContent = "Could not load the room list (" + err.message + ").";
      list.append(li);
    }
  }
  refresh();
  setInterval(() => { if (!document.hidden) refresh(); }, 5000);
})();
