// Peer server for chat-bench: the Django Channels chat tutorial's behaviour
// on Node with the `ws` package, written as its README suggests.
//
// ws://127.0.0.1:PORT/ws/chat/<room>/ : every text frame {"message": text}
// is broadcast as {"message": text} to every socket in the room, the
// sender's own included. Usage: node server.js [PORT]  (or PORT=...).
'use strict';

const http = require('http');
const { WebSocketServer, WebSocket } = require('ws');

const port = Number(process.argv[2] || process.env.PORT || 8000);
const host = process.env.HOST || '127.0.0.1';
const ROOM_PATH = /^\/ws\/chat\/(\w+)\/?$/;

/** room name -> Set of sockets */
const rooms = new Map();

const server = http.createServer((req, res) => {
  res.writeHead(404);
  res.end();
});
const wss = new WebSocketServer({ noServer: true });

server.on('upgrade', (req, socket, head) => {
  const match = ROOM_PATH.exec(new URL(req.url, 'http://x').pathname);
  if (!match) {
    socket.destroy();
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => {
    const room = match[1];
    let members = rooms.get(room);
    if (!members) {
      members = new Set();
      rooms.set(room, members);
    }
    members.add(ws);
    ws.on('message', (data, isBinary) => {
      if (isBinary) return;
      let message;
      try {
        message = JSON.parse(data.toString()).message;
      } catch {
        return;
      }
      if (typeof message !== 'string') return;
      const out = JSON.stringify({ message });
      for (const member of members) {
        if (member.readyState === WebSocket.OPEN) member.send(out);
      }
    });
    ws.on('close', () => {
      members.delete(ws);
      if (members.size === 0) rooms.delete(room);
    });
    ws.on('error', () => {});
  });
});

server.listen(port, host, () => {
  console.log(`node ws peer listening on ${host}:${port}`);
});
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(0));
