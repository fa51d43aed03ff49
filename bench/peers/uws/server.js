// Peer server for chat-bench: the Django Channels chat tutorial's behaviour
// on uWebSockets.js (the µWebSockets C++ core), written as its examples
// suggest: every room is a pub/sub topic and a message is published to it
// with app.publish, which reaches every subscriber, the sender included
// (ws.publish would skip the sender; the tutorial's group_send does not).
//
// ws://127.0.0.1:PORT/ws/chat/<room>/ : every text frame {"message": text}
// is broadcast as {"message": text} to every socket in the room.
// Usage: node server.js [PORT]  (or PORT=...).
'use strict';

// The native module itself: the package would otherwise fall back, silently,
// to a JavaScript implementation on a Node.js it has no binary for.
const uWS = require(`uWebSockets.js/binaries/uws_${process.platform}_${process.arch}_${process.versions.modules}.node`);

const port = Number(process.argv[2] || process.env.PORT || 8000);
const host = process.env.HOST || '127.0.0.1';
const ROOM_PATH = /^\/ws\/chat\/([\w.-]{1,100})\/?$/;
const decoder = new TextDecoder('utf-8', { fatal: true });

const app = uWS.App().ws('/*', {
  compression: uWS.DISABLED,
  maxPayloadLength: 64 * 1024,
  // A subscriber further behind than this misses messages: far above what
  // chat-bench's in-flight windows put in a socket, so nothing is dropped.
  maxBackpressure: 1024 * 1024,
  idleTimeout: 120,
  upgrade: (res, req, context) => {
    const match = ROOM_PATH.exec(req.getUrl());
    if (!match) {
      res.writeStatus('400 Bad Request').end();
      return;
    }
    res.upgrade(
      { room: match[1] },
      req.getHeader('sec-websocket-key'),
      req.getHeader('sec-websocket-protocol'),
      req.getHeader('sec-websocket-extensions'),
      context,
    );
  },
  open: (ws) => {
    ws.subscribe(ws.getUserData().room);
  },
  message: (ws, data, isBinary) => {
    if (isBinary) return;
    let message;
    try {
      message = JSON.parse(decoder.decode(data)).message;
    } catch {
      return;
    }
    if (typeof message !== 'string') return;
    app.publish(ws.getUserData().room, JSON.stringify({ message }), false);
  },
});

app.listen(host, port, (token) => {
  if (!token) {
    console.error(`uWebSockets.js peer: cannot listen on ${host}:${port}`);
    process.exit(1);
  }
  console.log(`uWebSockets.js peer listening on ${host}:${port}`);
});
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(0));
