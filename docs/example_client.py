#!/usr/bin/env python3
"""Minimal client for the chat server's WebSocket protocol, v2 (see docs/protocol.md).

Signs in as a guest over HTTP, connects to /ws, reads `hello`, sends `resume`,
opens a room it belongs to (a new guest belongs to general), sends one message
and prints the `ack` and the `posted` event for it.

    pip install websockets      # version 13 or newer
    python3 docs/example_client.py --base http://127.0.0.1:3000 --room general
"""
import argparse
import asyncio
import json
import urllib.error
import urllib.parse
import urllib.request
import uuid

from websockets.asyncio.client import connect


def sign_in_guest(base: str, name: str) -> str:
    """POST /api/sign_in_guest; returns the cookie pair "chat_session=<token>"."""
    data = urllib.parse.urlencode({"name": name}).encode()
    request = urllib.request.Request(f"{base}/api/sign_in_guest", data=data, method="POST")
    try:
        with urllib.request.urlopen(request) as response:
            for header in response.headers.get_all("Set-Cookie") or []:
                pair = header.split(";", 1)[0]
                if pair.startswith("chat_session="):
                    return pair
    except urllib.error.HTTPError as err:  # errors are {"code": ..., "message": ...}
        raise SystemExit(f"sign-in failed ({err.code}): {err.read().decode()}")
    raise SystemExit("sign-in answered without a chat_session cookie")


async def run(base: str, name: str, room: str, body: str) -> None:
    cookie = sign_in_guest(base, name)
    ws_url = "ws" + base[len("http"):] + "/ws"  # http -> ws, https -> wss
    async with connect(
        ws_url,
        origin=base,                          # must be the server's own origin
        additional_headers={"Cookie": cookie},
        max_size=None,                        # server frames (history, hello) can be large
    ) as ws:
        hello = json.loads(await ws.recv())
        if hello.get("type") != "hello" or hello.get("protocol") != 2:
            raise SystemExit(f"unexpected first frame: {hello}")
        print("hello:  ", hello)
        # hello lists the rooms the user belongs to, by id.
        room_id = next((r["id"] for r in hello["rooms"]
                        if (r.get("name") or "").lower() == room.lower()), None)
        if room_id is None:
            raise SystemExit(f"not a member of {room!r}; join it first ({{'type': 'join'}})")

        # Once per connection: per room, the last seq applied. Nothing kept
        # yet, so each room resumes from hello's last_seq (events after it).
        await ws.send(json.dumps({
            "type": "resume",
            "rooms": {str(r["id"]): r["last_seq"] for r in hello["rooms"]},
        }))
        # Frames on one connection are handled in order: `open` and `send`
        # may follow `resume` at once.
        await ws.send(json.dumps({"type": "open", "room_id": room_id}))
        client_id = str(uuid.uuid4())
        await ws.send(json.dumps(
            {"type": "send", "room_id": room_id, "client_id": client_id, "body": body}))

        ack = posted = None
        while ack is None or posted is None:
            frame = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
            kind = frame["type"]
            if kind == "error":
                raise SystemExit(f"error frame: {frame}")
            if kind == "ack" and frame["client_id"] == client_id:
                ack = frame
            elif (kind == "event" and frame.get("kind") == "posted"
                  and frame["message"]["client_id"] == client_id):
                posted = frame
            else:
                print("other:  ", frame)  # resumed, presence, others' events...
        print("ack:    ", ack)
        print("posted: ", posted)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="http://127.0.0.1:3000", help="server origin")
    parser.add_argument("--name", default="python-guest", help="display name (1-32 chars)")
    parser.add_argument("--room", default="general", help="a room the guest belongs to")
    parser.add_argument("--body", default="Hello from the Python example client")
    args = parser.parse_args()
    asyncio.run(run(args.base.rstrip("/"), args.name, args.room, args.body))


if __name__ == "__main__":
    main()
