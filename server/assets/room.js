// The chat page: a WebSocket to /ws/chat/<room>/ with typed events
// (subprotocol chat.v2), a log that renders text as text, a member list,
// reconnect with backoff and recovery of missed messages.
//
// Drop-in for the Channels tutorial's page: the same element ids, focus on
// the message input, and #chat-log exposes `value` as the tutorial's
// textarea did (every chat message followed by "\n").
"use strict";

(function () {
  const roomName = JSON.parse(document.querySelector("#room-name").textContent);
  const log = document.querySelector("#chat-log");
  const input = document.querySelector("#chat-message-input");
  const submit = document.querySelector("#chat-message-submit");
  const statusEl = document.querySelector("#connection-status");
  const nameInput = document.querySelector("#display-name");
  const memberList = document.querySelector("#member-list");
  const memberCount = document.querySelector("#member-count");
  const newMessages = document.querySelector("#new-messages");

  const NAME_KEY = "chat.displayName";
  const MAX_LINES = 2000;

  // ---- the log as text, as the tutorial's textarea held it ----
  let logText = "";
  Object.defineProperty(log, "value", { get: () => logText, configurable: true });

  // ---- display name: a default on arrival, changeable, remembered ----
  function validName(name) {
    return name.length > 0 && [...name].length <= 32 && name === name.trim() &&
      !/[\u0000-\u001f\u007f-\u009f\u00ad\u061c\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]/.test(name);
  }
  let me = localStorage.getItem(NAME_KEY);
  if (!me || !validName(me)) {
    me = "guest-" + Math.floor(Math.random() * 0x1000000).toString(16).padStart(6, "0");
    localStorage.setItem(NAME_KEY, me);
  }
  nameInput.value = me;

  // ---- rendering: text only, never HTML ----
  function hue(name) {
    let h = 0;
    for (const c of name) h = (h * 31 + c.codePointAt(0)) >>> 0;
    return h % 360;
  }
  function timeOf(ts) {
    const d = ts ? new Date(ts) : new Date();
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }
  function nearBottom() {
    return log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  }
  function append(row, stick) {
    log.append(row);
    while (log.childElementCount > MAX_LINES) log.firstElementChild.remove();
    if (stick) {
      log.scrollTop = log.scrollHeight;
    } else {
      newMessages.hidden = false;
    }
  }
  function chatLine(event, fromHistory) {
    const stick = nearBottom() || event.user === me;
    const row = document.createElement("div");
    row.className = "line chat" + (event.user === me ? " mine" : "") + (fromHistory ? " history" : "");
    if (event.id) row.dataset.id = String(event.id);
    const time = document.createElement("time");
    time.textContent = timeOf(event.ts);
    if (event.ts) time.dateTime = new Date(event.ts).toISOString();
    const who = document.createElement("span");
    who.className = "user";
    who.textContent = event.emote ? "*" : (event.user || "?");
    who.style.setProperty("--user-hue", hue(event.user || "?"));
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = event.emote ? event.user + " " + event.message : event.message;
    row.append(time, who, text);
    append(row, stick);
    logText += event.message + "\n";
  }
  function noticeLine(text, kind, ts) {
    const stick = nearBottom();
    const row = document.createElement("div");
    row.className = "line notice " + kind;
    const time = document.createElement("time");
    time.textContent = timeOf(ts);
    const body = document.createElement("span");
    body.className = "text";
    body.textContent = text;
    row.append(time, body);
    append(row, stick);
  }
  newMessages.addEventListener("click", () => {
    log.scrollTop = log.scrollHeight;
    newMessages.hidden = true;
  });
  log.addEventListener("scroll", () => { if (nearBottom()) newMessages.hidden = true; });

  // ---- members ----
  const members = new Set();
  function renderMembers() {
    memberList.replaceChildren(...[...members].sort().map((name) => {
      const li = document.createElement("li");
      li.textContent = name;
      li.style.setProperty("--user-hue", hue(name));
      if (name === me) li.className = "mine";
      return li;
    }));
    memberCount.textContent = String(members.size);
  }

  // ---- connection ----
  let socket = null;
  let lastId = 0;
  let attempt = 0;
  let retryTimer = null;
  const pending = [];

  function setStatus(kind, text) {
    statusEl.className = "status " + kind;
    statusEl.textContent = text;
  }

  function connect() {
    clearTimeout(retryTimer);
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const params = new URLSearchParams({ name: me });
    if (lastId > 0) params.set("since", String(lastId));
    const url = scheme + location.host + "/ws/chat/" + encodeURIComponent(roomName) + "/?" + params;
    setStatus("connecting", attempt === 0 ? "connecting…" : "reconnecting…");
    const ws = new WebSocket(url, ["chat.v2"]);
    socket = ws;
    ws.onopen = () => {
      attempt = 0;
      setStatus("live", "live");
      while (pending.length > 0 && ws.readyState === WebSocket.OPEN) ws.send(pending.shift());
    };
    ws.onmessage = (e) => {
      let event;
      try { event = JSON.parse(e.data); } catch { return; }
      handle(event);
    };
    ws.onclose = (e) => {
      if (socket !== ws) return;
      socket = null;
      if (e.code === 1003 || e.code === 1007) {
        setStatus("offline", "disconnected: " + (e.reason || e.code));
        return;
      }
      const floor = e.code === 1008 ? 10000 : e.code === 1013 ? 5000 : 0;
      const ceiling = Math.min(30000, 500 * 2 ** attempt);
      const delay = Math.max(floor, ceiling / 2 + Math.random() * ceiling / 2);
      attempt += 1;
      let left = Math.ceil(delay / 1000);
      setStatus("reconnecting", "connection lost, retrying in " + left + "s");
      const tick = setInterval(() => {
        left -= 1;
        if (left > 0 && socket === null) setStatus("reconnecting", "connection lost, retrying in " + left + "s");
        else clearInterval(tick);
      }, 1000);
      retryTimer = setTimeout(connect, delay);
    };
  }

  function handle(event) {
    switch (event.type) {
      case "welcome": {
        members.clear();
        for (const name of event.members || []) members.add(name);
        renderMembers();
        const history = (event.history || []).filter((m) => m.id > lastId);
        if (event.missed > 0) noticeLine(event.missed + " messages were missed while you were away", "warning", event.ts);
        for (const m of history) {
          chatLine(m, true);
          lastId = Math.max(lastId, m.id);
        }
        lastId = Math.max(lastId, event.last_id || 0);
        if (history.length > 0 && log.querySelector(".divider") === null) {
          const divider = document.createElement("div");
          divider.className = "divider";
          divider.textContent = "recent history";
          log.insertBefore(divider, log.querySelector(".line:not(.history)") || null);
        }
        break;
      }
      case "chat":
        if (event.id && event.id <= lastId) break;
        lastId = Math.max(lastId, event.id || 0);
        chatLine(event, false);
        break;
      case "join":
        if (!members.has(event.user)) noticeLine(event.message, "join", event.ts);
        members.add(event.user);
        renderMembers();
        break;
      case "leave":
        members.delete(event.user);
        renderMembers();
        noticeLine(event.message, "leave", event.ts);
        break;
      case "nick":
        members.delete(event.old);
        members.add(event.user);
        renderMembers();
        noticeLine(event.message, "nick", event.ts);
        break;
      case "error":
        noticeLine(event.message, "error", event.ts);
        break;
      default:
        if (typeof event.message === "string" && !event.type) chatLine({ message: event.message }, false);
    }
  }

  // ---- sending ----
  function send() {
    const text = input.value;
    if (text.trim() === "") {
      input.focus();
      return;
    }
    const frame = JSON.stringify({ message: text });
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(frame);
    } else {
      pending.push(frame);
      noticeLine("not connected: your message will be sent on reconnect", "warning");
    }
    input.value = "";
    autosize();
    input.focus();
  }
  function autosize() {
    input.style.height = "auto";
    input.style.height = Math.min(input.scrollHeight, 160) + "px";
  }
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send();
    }
  });
  input.addEventListener("input", autosize);
  submit.addEventListener("click", send);

  function rename() {
    const name = nameInput.value.trim();
    if (name === me) return;
    if (!validName(name)) {
      nameInput.value = me;
      noticeLine("A display name is 1 to 32 characters, without control characters.", "error");
      return;
    }
    const old = me;
    me = name;
    localStorage.setItem(NAME_KEY, me);
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({ type: "nick", name: me }));
    }
    members.delete(old);
    members.add(me);
    renderMembers();
  }
  nameInput.addEventListener("change", rename);
  nameInput.addEventListener("keydown", (e) => {
    if (e.key === "Enter") {
      e.preventDefault();
      rename();
      input.focus();
    }
  });

  input.focus();
  connect();
})();
