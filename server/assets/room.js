// The chat page (/chat/<room>/).
//
// One WebSocket to /ws/chat/<room>/ with typed events (subprotocol
// chat.v2): a welcome with the members and recent history, then chat, join,
// leave, nick and error events. The log renders text as text (textContent,
// never HTML), groups consecutive messages, colours each name by a hash of
// it, and follows new messages unless the reader has scrolled up.
// Scrolling to the top loads older messages ({"type": "history"}) above,
// keeping the reading position, until the room's beginning.
// Connection trouble is shown in the top bar; the page reconnects with
// backoff (honouring the close codes in chat-protocol's close.rs) and asks
// for what it missed with ?since=<last id>.
//
// Drop-in for the Channels tutorial's page: the same element ids, focus on
// #chat-message-input at load, and #chat-log's `value` is the log as the
// tutorial's textarea held it: every chat message followed by "\n".
"use strict";

(function () {
  const $ = (selector) => document.querySelector(selector);
  const roomName = JSON.parse($("#room-name").textContent);
  const log = $("#chat-log");
  const input = $("#chat-message-input");
  const submit = $("#chat-message-submit");
  const statusBox = $("#connection-status");
  const statusText = $("#connection-status-text");
  const reconnectNow = $("#reconnect-now");
  const nameInput = $("#display-name");
  const memberList = $("#member-list");
  const memberCount = $("#member-count");
  const membersToggle = $("#members-toggle");
  const newMessages = $("#new-messages");
  const topicLine = $("#room-topic");

  const SUBPROTOCOL = "chat.v2";
  const NAME_KEY = "chat.displayName";
  const PERSON_KEY = "chat.key";
  /** Rows kept in the log; older ones are dropped. */
  const MAX_ROWS = 1000;
  /** Messages from one person closer together than this share a header. */
  const GROUP_MS = 5 * 60 * 1000;
  /** The server refuses larger frames (64 KiB by default); stay under it
   *  until its welcome says its limit. */
  let maxFrameBytes = 60 * 1024;
  /** How close to the bottom counts as "at the bottom" for auto-scroll. */
  const STICK_PX = 48;
  const baseTitle = document.title;

  // ---------------------------------------------------------------------
  // #chat-log.value: the tutorial's textarea, one chat message per line.

  const chatTexts = [];
  Object.defineProperty(log, "value", {
    configurable: true,
    get: () => chatTexts.map((text) => text + "\n").join(""),
  });

  // ---------------------------------------------------------------------
  // Display name: a default on arrival, changeable, kept in localStorage.

  // chat-protocol's rule: 1 to 32 characters, no control or invisible
  // formatting characters, no white space at either end.
  const FORBIDDEN_IN_NAMES =
    /[\p{Cc}\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u2028-\u202e\u2060-\u206f\u2800\u3164\ufeff\uffa0\ufff9-\ufffb\u{13430}-\u{1343f}\u{1bca0}-\u{1bca3}\u{1d173}-\u{1d17a}\u{e0000}-\u{e007f}]/u;

  function nameProblem(name) {
    if (name === "") return "A display name can't be empty.";
    if (FORBIDDEN_IN_NAMES.test(name)) return "A display name can't contain control or invisible characters.";
    if (/^\s|\s$/u.test(name)) return "A display name can't start or end with a space.";
    const length = [...name].length;
    if (length > 32) return "A display name has at most 32 characters (this one has " + length + ").";
    return null;
  }

  function storedName() {
    try {
      return localStorage.getItem(NAME_KEY);
    } catch {
      return null;
    }
  }

  function storeName(name) {
    try {
      localStorage.setItem(NAME_KEY, name);
    } catch {
      // Storage disabled: the name lasts as long as the page.
    }
  }

  function defaultName() {
    const adjectives = ["calm", "brave", "quiet", "swift", "sunny", "clever", "gentle", "lucky",
      "bright", "merry", "keen", "bold", "witty", "cosy", "jolly", "nimble"];
    const animals = ["otter", "fox", "heron", "panda", "lynx", "koala", "owl", "badger",
      "robin", "seal", "wren", "hare", "yak", "moth", "newt", "puffin"];
    const pick = (list) => list[Math.floor(Math.random() * list.length)];
    return pick(adjectives) + "-" + pick(animals) + "-" + String(Math.floor(Math.random() * 90) + 10);
  }

  // This person's secret key, kept in localStorage and sent at connect:
  // the server lets every tab with the same key share a display name, and
  // refuses the name to anyone else while one of them is in the room.
  function personalKey() {
    const fresh = () => Array.from(crypto.getRandomValues(new Uint8Array(16)),
      (b) => b.toString(16).padStart(2, "0")).join("");
    try {
      let key = localStorage.getItem(PERSON_KEY);
      if (key === null || !/^[A-Za-z0-9._~-]{16,128}$/.test(key)) {
        key = fresh();
        localStorage.setItem(PERSON_KEY, key);
      }
      return key;
    } catch {
      // Storage disabled: a key for this page only.
      return fresh();
    }
  }
  const key = personalKey();

  let me = storedName();
  if (me === null || nameProblem(me) !== null) {
    me = defaultName();
    storeName(me);
  }
  nameInput.value = me;

  // ---------------------------------------------------------------------
  // Rendering. Every piece of text from the network goes in with
  // textContent; colours go in as CSS custom properties (CSSOM, which the
  // page's Content-Security-Policy allows, unlike style="" attributes).

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  /** A stable hue for a name, so everyone sees the same colour for it. */
  function hue(name) {
    let hash = 0x811c9dc5;
    for (const c of name) {
      hash ^= c.codePointAt(0);
      hash = Math.imul(hash, 0x01000193) >>> 0;
    }
    return hash % 360;
  }

  function initial(name) {
    const first = [...name.trim()][0];
    return first ? first.toUpperCase() : "?";
  }

  function timeElement(ts, className) {
    const date = new Date(ts);
    const time = element("time", className, date.toLocaleTimeString([], { hour: "numeric", minute: "2-digit" }));
    time.dateTime = date.toISOString();
    time.title = date.toLocaleString();
    return time;
  }

  function dayLabel(date) {
    const today = new Date();
    const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
    if (date.toDateString() === today.toDateString()) return "Today";
    if (date.toDateString() === yesterday.toDateString()) return "Yesterday";
    return date.toLocaleDateString([], { weekday: "long", year: "numeric", month: "long", day: "numeric" });
  }

  // Auto-scroll: follow new rows while the reader is at the bottom; once
  // they scroll up, leave the view alone and offer a "New messages" button.
  let atBottom = true;
  let unseen = 0;

  function scrollToBottom() {
    log.scrollTop = log.scrollHeight;
    atBottom = true;
    unseen = 0;
    newMessages.hidden = true;
  }

  log.addEventListener("scroll", () => {
    if (log.scrollTop <= TOP_PX) loadOlder();
    atBottom = log.scrollHeight - log.scrollTop - log.clientHeight <= STICK_PX;
    if (atBottom) {
      unseen = 0;
      newMessages.hidden = true;
    }
  }, { passive: true });
  newMessages.addEventListener("click", () => {
    scrollToBottom();
    input.focus();
  });
  // The log shrinks when the phone keyboard opens or the composer grows:
  // keep the newest message in view if it was.
  new ResizeObserver(() => {
    if (atBottom) log.scrollTop = log.scrollHeight;
  }).observe(log);

  /** The last chat row, for grouping: { row, user, ts, emote }. */
  let lastChat = null;
  let lastDay = null;
  let unreadWhileHidden = 0;

  function addRow(row, { follow = false, isChat = false, text = "" } = {}) {
    const stick = atBottom || follow;
    log.append(row);
    if (isChat) chatTexts.push(text);
    while (log.childElementCount > MAX_ROWS) {
      const old = log.firstElementChild;
      if (old === olderNotice) olderNotice = null;
      if (old.classList.contains("msg")) {
        chatTexts.shift();
        // The first message is no longer shown: scrolling up loads it again.
        if (olderState === "done") olderState = "idle";
      }
      old.remove();
    }
    if (stick) {
      scrollToBottom();
    } else if (isChat) {
      unseen += 1;
      newMessages.textContent = unseen === 1 ? "1 new message ↓" : unseen + " new messages ↓";
      newMessages.hidden = false;
    }
  }

  function dayDivider(ts) {
    const date = new Date(ts);
    const key = date.toDateString();
    if (key === lastDay) return;
    const first = lastDay === null;
    lastDay = key;
    if (first && key === new Date().toDateString()) return;
    addRow(dividerRow(ts));
    lastChat = null;
  }

  /** The line naming the day of `ts`, above that day's first row. */
  function dividerRow(ts) {
    const date = new Date(ts);
    const divider = element("div", "day-divider");
    divider.setAttribute("role", "separator");
    divider.dataset.day = date.toDateString();
    divider.append(element("span", null, dayLabel(date)));
    return divider;
  }

  function chatRow(event, { history = false } = {}) {
    const user = typeof event.user === "string" ? event.user : "";
    const text = typeof event.message === "string" ? event.message : "";
    const ts = event.ts || Date.now();
    const mine = user !== "" && user === me;
    dayDivider(ts);
    const grouped = lastChat !== null && log.lastElementChild === lastChat.row &&
      lastChat.user === user && !lastChat.emote && !event.emote && ts - lastChat.ts < GROUP_MS;
    const row = renderChat(event, { grouped, history });
    addRow(row, { follow: mine && !history, isChat: true, text });
    lastChat = { row, user, ts, emote: Boolean(event.emote) };

    if (document.hidden && !history) {
      unreadWhileHidden += 1;
      document.title = "(" + unreadWhileHidden + ") " + baseTitle;
    }
  }

  /** The row of a chat message; `grouped` leaves out the name and avatar. */
  function renderChat(event, { grouped, history }) {
    const user = typeof event.user === "string" ? event.user : "";
    const text = typeof event.message === "string" ? event.message : "";
    const ts = event.ts || Date.now();
    const mine = user !== "" && user === me;
    const row = element("div", "msg");
    row.classList.toggle("mine", mine);
    row.classList.toggle("grouped", grouped);
    row.classList.toggle("emote", Boolean(event.emote));
    row.classList.toggle("from-history", history);
    if (event.id) row.dataset.id = String(event.id);
    row.dataset.day = new Date(ts).toDateString();
    row.style.setProperty("--hue", String(hue(user)));

    const gutter = element("div", "gutter");
    if (grouped) {
      gutter.append(timeElement(ts, "hover-time"));
    } else {
      gutter.append(element("span", "avatar", initial(user || "?")));
      gutter.firstChild.setAttribute("aria-hidden", "true");
    }
    const body = element("div", "body");
    if (!grouped) {
      const meta = element("div", "meta");
      meta.append(element("span", "user", user || "someone"));
      if (mine) meta.append(element("span", "you", "you"));
      meta.append(timeElement(ts, "time"));
      body.append(meta);
    }
    const content = element("div", "text");
    if (event.emote) {
      content.append(element("span", "emote-user", user), document.createTextNode(" " + text));
    } else {
      content.textContent = text;
    }
    body.append(content);
    row.append(gutter, body);
    return row;
  }

  function noticeRow(kind, text, ts) {
    const when = ts || Date.now();
    dayDivider(when);
    const row = element("div", "notice notice-" + kind);
    row.dataset.day = new Date(when).toDateString();
    row.append(element("span", "notice-text", text), timeElement(when, "time"));
    addRow(row, { follow: kind === "error" || kind === "warning" });
    lastChat = null;
    return row;
  }

  // ---------------------------------------------------------------------
  // Older messages: scrolling to the top of the log asks the server for
  // the page before the oldest message shown ({"type": "history"}), and
  // puts it above without moving what the reader is looking at. A notice
  // at the top says when the room's first message is reached.

  /** Scrolled this close to the top, older messages are fetched. */
  const TOP_PX = 80;
  /** Messages fetched per request. */
  const OLDER_PAGE = 50;
  /** "idle", "loading" (a request is out) or "done" (the first message is shown). */
  let olderState = "idle";
  let olderRequests = 0;
  let olderRef = null;
  /** After a refusal, no new request before this time (ms). */
  let olderPauseUntil = 0;
  /** The notice at the top of the log: loading, or the beginning. */
  let olderNotice = null;

  function oldestShownId() {
    const first = log.querySelector(".msg[data-id]");
    return first ? Number(first.dataset.id) || 0 : 0;
  }

  function setOlderNotice(kind, text) {
    if (olderNotice === null) {
      olderNotice = element("div", "");
      olderNotice.append(element("span", "notice-text"));
      log.prepend(olderNotice);
    }
    olderNotice.className = "notice notice-" + kind + " older-notice";
    olderNotice.firstChild.textContent = text;
  }

  function clearOlderNotice() {
    if (olderNotice !== null) olderNotice.remove();
    olderNotice = null;
  }

  function loadOlder() {
    if (olderState !== "idle" || !welcomed || Date.now() < olderPauseUntil) return;
    if (socket === null || socket.readyState !== WebSocket.OPEN || socket.protocol !== SUBPROTOCOL) return;
    const before = oldestShownId() || lastId + 1;
    if (before <= 1) {
      olderState = "done";
      setOlderNotice("info", "This is the beginning of #" + roomName + ".");
      return;
    }
    olderState = "loading";
    olderRequests += 1;
    olderRef = "older-" + olderRequests;
    setOlderNotice("info", "Loading earlier messages…");
    socket.send(JSON.stringify({ type: "history", before, limit: OLDER_PAGE, ref: olderRef }));
  }

  /** Fetches more while the log does not fill its box (nothing to scroll yet). */
  function fillLog() {
    if (log.scrollHeight <= log.clientHeight + TOP_PX) loadOlder();
  }

  function olderArrived(event) {
    if (event.ref !== olderRef || olderState !== "loading") return;
    olderRef = null;
    // Keep the reader's place: the distance from the bottom stays the same.
    const fromBottom = log.scrollHeight - log.scrollTop;
    clearOlderNotice();
    const oldest = oldestShownId() || Infinity;
    const messages = (Array.isArray(event.messages) ? event.messages : [])
      .filter((m) => m !== null && typeof m === "object" && (Number(m.id) || 0) < oldest);
    const rows = document.createDocumentFragment();
    const texts = [];
    let previous = null;
    let day = null;
    for (const m of messages) {
      const user = typeof m.user === "string" ? m.user : "";
      const ts = m.ts || 0;
      // Each day's first message gets its day line, as live ones do.
      const key = new Date(ts).toDateString();
      if (key !== day) {
        rows.append(dividerRow(ts));
        day = key;
        previous = null;
      }
      const grouped = previous !== null && previous.user === user && !previous.emote && !m.emote &&
        ts - previous.ts < GROUP_MS;
      rows.append(renderChat(m, { grouped, history: true }));
      texts.push(typeof m.message === "string" ? m.message : "");
      previous = { user, ts, emote: Boolean(m.emote) };
    }
    // Where the page meets what was shown: one day line per day.
    const next = log.firstElementChild;
    if (day !== null && next !== null && next.dataset.day) {
      if (next.classList.contains("day-divider")) {
        if (next.dataset.day === day) next.remove();
      } else if (next.dataset.day !== day) {
        next.before(dividerRow(new Date(next.dataset.day).getTime()));
      }
    }
    log.prepend(rows);
    chatTexts.unshift(...texts);
    if (event.more === true) {
      olderState = "idle";
    } else {
      olderState = "done";
      setOlderNotice("info", "This is the beginning of #" + roomName + ".");
    }
    log.scrollTop = log.scrollHeight - fromBottom;
    if (olderState === "idle") fillLog();
  }

  /** A refusal while a request is out ends it; try again a little later. */
  function olderRefused() {
    if (olderState !== "loading") return;
    olderState = "idle";
    olderRef = null;
    olderPauseUntil = Date.now() + 5000;
    clearOlderNotice();
  }

  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) {
      unreadWhileHidden = 0;
      document.title = baseTitle;
      if (socket === null && retryTimer !== null && retryFloor === 0) connect();
    }
  });

  // ---------------------------------------------------------------------
  // Members.

  const members = new Set();

  function renderMembers() {
    const names = [...members].sort((a, b) =>
      (b === me) - (a === me) || a.localeCompare(b, undefined, { sensitivity: "base" }));
    memberList.replaceChildren(...names.map((name) => {
      const li = element("li", name === me ? "member mine" : "member");
      li.style.setProperty("--hue", String(hue(name)));
      const avatar = element("span", "avatar small", initial(name));
      avatar.setAttribute("aria-hidden", "true");
      li.append(avatar, element("span", "member-name", name));
      if (name === me) li.append(element("span", "you", "you"));
      return li;
    }));
    memberCount.textContent = String(members.size);
  }

  const membersPane = $("#members");
  function syncMembersToggle() {
    membersToggle.setAttribute("aria-expanded", String(getComputedStyle(membersPane).display !== "none"));
  }
  membersToggle.addEventListener("click", () => {
    document.body.classList.toggle("members-toggled");
    syncMembersToggle();
  });
  const narrow = window.matchMedia("(max-width: 760px)");
  narrow.addEventListener("change", syncMembersToggle);
  syncMembersToggle();
  // On a phone the list is a drawer over the log: a tap on the log or
  // Escape closes it.
  function closeDrawer() {
    if (narrow.matches && document.body.classList.contains("members-toggled")) {
      document.body.classList.remove("members-toggled");
      syncMembersToggle();
    }
  }
  log.addEventListener("click", closeDrawer);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") closeDrawer();
  });

  // ---------------------------------------------------------------------
  // Connection state, shown in the top bar.

  function setStatus(kind, text) {
    statusBox.className = "status " + kind;
    document.body.classList.toggle("disconnected", kind !== "live");
    statusText.textContent = text;
    // "Retry now" is offered unless the server asked for a pause (1008, 1013).
    reconnectNow.hidden = !(kind === "offline" || (kind === "reconnecting" && retryFloor < 5000));
  }

  let socket = null;
    let lastId = 0;
  /** The epoch `lastId` belongs to (the welcome names it). */
  let epoch = null;
  // A server that requires a token gets it in the page's URL (?token=...);
  // it is kept for this tab and passed on to the socket.
  const token = new URLSearchParams(location.search).get("token") || sessionStorage.getItem("chat.token");
  if (token) {
    sessionStorage.setItem("chat.token", token);
    const back = document.querySelector(".back");
    if (back) back.href = "/chat/?token=" + encodeURIComponent(token);
  }
  // The token stays out of the address bar and the browser's history (a
  // reload comes back through the server's token page, token.js).
  if (new URLSearchParams(location.search).has("token")) {
    const url = new URL(location.href);
    url.searchParams.delete("token");
    history.replaceState(history.state, "", url.pathname + url.search + url.hash);
  }
  let welcomed = false;
  let attempt = 0;
  let retryTimer = null;
  let retryFloor = 0;
  let countdown = null;
  let outageNotice = null;
  /** Frames typed while disconnected: { frame, row }. */
  const pending = [];

  function socketUrl() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const params = new URLSearchParams({ name: me, key });
        if (lastId > 0) {
      params.set("since", String(lastId));
      if (epoch) params.set("epoch", epoch);
    }
    if (token) params.set("token", token);
    return scheme + location.host + "/ws/chat/" + encodeURIComponent(roomName) + "/?" + params;
  }

  function clearRetry() {
    clearTimeout(retryTimer);
    clearInterval(countdown);
    retryTimer = null;
    countdown = null;
  }

  function connect() {
    clearRetry();
    if (socket !== null) return;
    setStatus(welcomed ? "reconnecting" : "connecting", welcomed ? "reconnecting…" : "connecting…");
    reconnectNow.hidden = true;
    let ws;
    try {
      ws = new WebSocket(socketUrl(), [SUBPROTOCOL]);
    } catch (err) {
      setStatus("offline", "cannot connect");
      noticeRow("error", "Cannot open a connection: " + err.message);
      return;
    }
    socket = ws;
    let opened = false;
    ws.addEventListener("open", () => {
      opened = true;
      // A server that does not speak the typed protocol sends plain
      // {"message": text} frames and no welcome: go live on open.
      if (socket === ws && ws.protocol !== SUBPROTOCOL) becameLive(0, 0);
    });
    ws.addEventListener("message", (message) => {
      if (socket !== ws) return;
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return;
      }
      if (event !== null && typeof event === "object") handle(event, ws);
    });
    ws.addEventListener("close", (close) => {
      if (socket !== ws) return;
      socket = null;
      if (!opened) {
        refused();
        return;
      }
      closed(close.code, close.reason);
    });
  }

  /** The name was taken when we last tried: wait for a new one. */
  let nameTaken = false;

  /** The handshake was refused. A browser cannot see why (a 409 looks
   *  like any failed connection), so ask whether our name is the reason. */
  function refused() {
    const url = "/api/rooms/" + encodeURIComponent(roomName) + "/names/" + encodeURIComponent(me) +
      "?" + new URLSearchParams(token ? { key, token } : { key });
    fetch(url, { cache: "no-store" })
      .then((response) => (response.ok ? response.json() : null))
      .catch(() => null)
      .then((answer) => {
        if (socket !== null) return;
        if (answer !== null && answer.free === false) {
          nameTaken = true;
          clearRetry();
          setStatus("offline", "name taken");
          nameInput.setAttribute("aria-invalid", "true");
          noticeRow("error", "The name " + me + " is taken in #" + roomName +
            " by someone else. Choose another name below (or /nick NAME); you will join as soon as you do.");
          return;
        }
        closed(1006, "");
      });
  }

  function closed(code, reason) {
    if (olderState === "loading") {
      olderState = "idle";
      olderRef = null;
      clearOlderNotice();
    }
    // close.rs: after 1000, 1003 and 1007 a reconnect would be refused
    // the same way, so wait for the person to ask for one.
    if (code === 1000 || code === 1003 || code === 1007) {
      retryFloor = 0;
      setStatus("offline", "disconnected");
      noticeRow("error", "The server closed the connection" + (reason ? ": " + reason : "") + ".");
      return;
    }
    if (code === 1009) {
      noticeRow("error", "Your last message was too long for the server and was not delivered.");
    }
    // chat-protocol's close.rs: 1001 (restart) after a random 1-5 s,
    // 1008 not before 10 s, 1013 not before 5 s; otherwise backoff from
    // 0.5 s doubling to 30 s, each with jitter so that a room does not
    // come back all at once.
    let floor = 0;
    let spread = 0;
    if (code === 1001) {
      floor = 1000;
      spread = 4000;
    } else if (code === 1008) {
      floor = 10000;
      spread = 5000;
    } else if (code === 1013) {
      floor = 5000;
      spread = 5000;
    }
    const ceiling = Math.min(30000, 500 * 2 ** Math.min(attempt, 10));
    const backoff = ceiling / 2 + Math.random() * (ceiling / 2);
    const delay = Math.max(backoff, floor + Math.random() * spread);
    attempt += 1;
    retryFloor = floor;
    if (reason && (code === 1008 || code === 1011 || code === 1013)) {
      noticeRow("warning", "The server closed the connection: " + reason + ".");
    }

    if (welcomed && outageNotice === null) {
      const why = code === 1001 ? "The server is restarting" : "Connection lost";
      outageNotice = noticeRow("warning", why + "; reconnecting…");
    }
    const label = code === 1001 ? "server restarting" : "reconnecting";
    let left = Math.ceil(delay / 1000);
    const show = () => setStatus("reconnecting", label + " in " + left + "s");
    show();
    countdown = setInterval(() => {
      left -= 1;
      if (left > 0) show();
    }, 1000);
    retryTimer = setTimeout(connect, delay);
  }

  // Leaving the page (or the browser keeping it in its back/forward
  // cache) closes the connection, so the room does not count a visitor who
  // is gone; coming back reconnects and catches up with ?since.
  window.addEventListener("pagehide", () => {
    clearRetry();
    if (socket !== null) {
      const ws = socket;
      socket = null;
      ws.close(1000, "page closed");
    }
  });
  window.addEventListener("pageshow", (event) => {
    if (event.persisted && socket === null) {
      attempt = 0;
      connect();
    }
  });

  reconnectNow.addEventListener("click", () => {
    attempt = 0;
    connect();
    input.focus();
  });
  window.addEventListener("online", () => {
    if (socket === null && retryTimer !== null && retryFloor === 0) connect();
  });

  function becameLive(recovered, missed) {
    if (welcomed && outageNotice !== null) {
      let text = "Reconnected.";
      if (recovered > 0) text += recovered === 1 ? " 1 message arrived while you were away:" : " " + recovered + " messages arrived while you were away:";
      outageNotice.querySelector(".notice-text").textContent += " " + text;
      outageNotice.classList.replace("notice-warning", "notice-info");
    }
    if (missed > 0) {
      noticeRow("warning", missed + (missed === 1 ? " message was" : " messages were") + " lost while you were away.");
    }
    outageNotice = null;
    welcomed = true;
    attempt = 0;
    setStatus("live", "live");
    while (pending.length > 0 && socket !== null && socket.readyState === WebSocket.OPEN) {
      const { frame, row } = pending.shift();
      row.remove();
      socket.send(frame);
    }
  }

  function handle(event, ws) {
    switch (event.type) {
            case "welcome": {
        const serverEpoch = typeof event.epoch === "string" ? event.epoch : "";
        if (epoch !== null && serverEpoch !== "" && serverEpoch !== epoch) {
          // A new id sequence (the server restarted, or lost its rooms):
          // the server ignored our `since` and sent its history afresh.
          lastId = 0;
          noticeRow("info", "The server was restarted; earlier messages are no longer kept there.");
        }
        if (serverEpoch !== "") epoch = serverEpoch;
        const serverLast = Number(event.last_id) || 0;
        if (lastId > serverLast) {
          // The room's sequence went backwards: the server restarted and
          // lost its in-memory history, so `since` meant nothing to it.
          // Start over without it to get everything said since then.
          lastId = 0;
          socket = null;
          ws.close(1000, "resync");
          noticeRow("info", "The server was restarted; earlier messages are no longer kept there.");
          connect();
          return;
        }
        if (event.limits && Number(event.limits.max_message_bytes) > 0) {
          // Leave room for the JSON around the text.
          maxFrameBytes = Number(event.limits.max_message_bytes);
        }
        showTopic(typeof event.topic === "string" ? event.topic : "");
        if (typeof event.user === "string" && event.user !== "" && event.user !== me) {
          me = event.user;
          nameInput.value = me;
        }
        members.clear();
        for (const name of event.members || []) members.add(name);
        members.add(me);
        renderMembers();
        const history = (event.history || []).filter((m) => (Number(m.id) || 0) > lastId);
        const first = !welcomed;
        becameLive(history.length, Number(event.missed) || 0);
        for (const m of history) {
          chatRow(m, { history: true });
          lastId = Math.max(lastId, Number(m.id) || 0);
        }
        lastId = Math.max(lastId, serverLast);
        if (first) {
          const others = members.size - 1;
          noticeRow("info", others === 0
            ? "You joined #" + roomName + " as " + me + ". No one else is here yet."
            : "You joined #" + roomName + " as " + me + ". " + (others === 1 ? "1 other person is" : others + " others are") + " here.");
        }
        fillLog();
        break;
      }
      case "history":
        olderArrived(event);
        break;
      case "chat": {
        const id = Number(event.id) || 0;
        if (id !== 0 && id <= lastId) break;
        lastId = Math.max(lastId, id);
        chatRow(event);
        break;
      }
      case "join":
        if (!members.has(event.user)) {
          members.add(event.user);
          renderMembers();
          noticeRow("join", event.user + " joined", event.ts);
        }
        break;
      case "leave":
        if (members.delete(event.user)) {
          renderMembers();
          noticeRow("leave", event.user + " left", event.ts);
        }
        break;
      case "nick":
        members.delete(event.old);
        members.add(event.user);
        renderMembers();
        if (event.old === previousName && event.user === me) {
          previousName = null;
          noticeRow("nick", "You are now known as " + me, event.ts);
        } else {
          noticeRow("nick", event.old + " is now known as " + event.user, event.ts);
        }
        break;
      case "topic":
        showTopic(typeof event.topic === "string" ? event.topic : "");
        noticeRow("nick", event.message || "The topic changed.", event.ts);
        break;
      case "error":
        if (event.code === "unavailable" || event.code === "invalid_query" || event.code === "rate_limited") {
          olderRefused();
        }
        if ((event.code === "invalid_name" || event.code === "name_taken") && previousName !== null) {
          // The server refused the new name: go back to the one it knows.
          members.delete(me);
          me = previousName;
          previousName = null;
          members.add(me);
          storeName(me);
          nameInput.value = me;
          renderMembers();
        }
        noticeRow("error", event.message || "The server reported an error.", event.ts);
        break;
      default:
        // A plain (tutorial) server's {"message": text}; unknown event
        // types from a newer server are ignored.
        if (event.type === undefined && typeof event.message === "string") chatRow({ message: event.message });
    }
  }

  // ---------------------------------------------------------------------
  // The room's topic, in the header.

  let currentTopic = "";

  function showTopic(topic) {
    currentTopic = topic;
    topicLine.textContent = topic;
    topicLine.title = topic;
    topicLine.hidden = topic === "";
  }

  // ---------------------------------------------------------------------
  // Sending.

  const encoder = new TextEncoder();

  function frameFor(text) {
    const action = /^\/me(\s|$)/.exec(text);
    if (action) return JSON.stringify({ type: "me", message: text.slice(action[0].length) });
    return JSON.stringify({ message: text });
  }

  function send() {
    const text = input.value;
    if (text.trim() === "") {
      input.focus();
      return;
    }
    const nick = /^\/nick\s+(.+)$/s.exec(text);
    if (nick) {
      if (setName(nick[1].trim(), true)) clearInput();
      return;
    }
    const frame = frameFor(text);
    const topic = /^\/topic(?:\s+(.*))?$/s.exec(text);
    if (topic) {
      if (topic[1] === undefined) {
        noticeRow("info", currentTopic ? "The topic is: " + currentTopic : "No topic is set. /topic TEXT sets one.");
      } else if (socket !== null && socket.readyState === WebSocket.OPEN && welcomed) {
        socket.send(JSON.stringify({ type: "topic", topic: topic[1].trim() }));
      } else {
        noticeRow("error", "Not connected: the topic can be set once the connection is back.");
        return;
      }
      clearInput();
      return;
    }
    if (encoder.encode(frame).length > maxFrameBytes) {
      noticeRow("error", "That message is too long to send (the limit is about " + Math.floor(maxFrameBytes / 1024) + " KB). Split it into parts.");
      input.focus();
      return;
    }
    if (socket !== null && socket.readyState === WebSocket.OPEN && welcomed) {
      socket.send(frame);
    } else {
      const row = noticeRow("pending", (welcomed ? "Not connected; this will be sent when the connection is back: " : "Sending once connected: ") + text);
      pending.push({ frame, row });
    }
    clearInput();
  }

  function clearInput() {
    input.value = "";
    autosize();
    input.focus();
  }

  function autosize() {
    input.style.setProperty("height", "auto");
    input.style.setProperty("height", Math.min(input.scrollHeight + 2, 160) + "px");
  }

  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send();
    }
  });
  input.addEventListener("input", autosize);
  submit.addEventListener("click", send);

  // ---------------------------------------------------------------------
  // Renaming, from the name field or with /nick.

  let previousName = null;

  /** Takes `name` as the display name; returns whether it was valid. */
  function setName(name, announce) {
    const problem = nameProblem(name);
    if (problem !== null) {
      nameInput.value = me;
      nameInput.setAttribute("aria-invalid", "true");
      noticeRow("error", problem);
      return false;
    }
    nameInput.removeAttribute("aria-invalid");
    nameInput.value = name;
    if (name === me) return true;
    previousName = me;
    members.delete(me);
    me = name;
    members.add(me);
    storeName(me);
    renderMembers();
    if (announce && socket !== null && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({ type: "nick", name: me }));
    } else if (nameTaken && socket === null) {
      nameTaken = false;
      previousName = null;
      connect();
    }
    return true;
  }

  nameInput.addEventListener("change", () => setName(nameInput.value.trim(), true));
  nameInput.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      setName(nameInput.value.trim(), true);
      input.focus();
    } else if (event.key === "Escape") {
      nameInput.value = me;
      input.focus();
    }
  });

  renderMembers();
  input.focus();
  connect();
})();
