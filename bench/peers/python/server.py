"""Peer server for chat-bench: the Django Channels chat tutorial's behaviour
on Python with the `websockets` package, written as its docs suggest
(`broadcast()` to the room's connections).

ws://127.0.0.1:PORT/ws/chat/<room>/ : every text frame {"message": text} is
broadcast as {"message": text} to every socket in the room, the sender's own
included. Usage: python server.py [PORT]  (or PORT=...).
"""

import asyncio
import json
import os
import re
import signal
import sys

from websockets.asyncio.server import broadcast, serve

ROOM_PATH = re.compile(r"^/ws/chat/(\w+)/?$")

# room name -> set of connections
rooms: dict[str, set] = {}


async def handler(websocket):
    match = ROOM_PATH.match(websocket.request.path.split("?", 1)[0])
    if match is None:
        await websocket.close(1008, "unknown path")
        return
    room = match.group(1)
    members = rooms.setdefault(room, set())
    members.add(websocket)
    try:
        async for data in websocket:
            if not isinstance(data, str):
                continue
            try:
                message = json.loads(data)["message"]
            except (ValueError, KeyError, TypeError):
                continue
            if not isinstance(message, str):
                continue
            broadcast(members, json.dumps({"message": message}))
    finally:
        members.discard(websocket)
        if not members:
            rooms.pop(room, None)


async def main():
    port = int(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PORT", "8000"))
    host = os.environ.get("HOST", "127.0.0.1")
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set_result, None)
    async with serve(handler, host, port):
        print(f"python websockets peer listening on {host}:{port}", flush=True)
        await stop


if __name__ == "__main__":
    asyncio.run(main())
