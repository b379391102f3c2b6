#!/usr/bin/env python3
"""Comfort: an Iglu plugin in Python, written from docs/PROTOCOL.md alone.

It uses only pyzmq (libzmq) and msgpack. It subscribes to every room's
temperature, keeps a running average per room, and answers:

  average  {"room": str}        -> {"room", "celsius", "readings"}
  rooms    null                 -> [str]
  echo     any                  -> the same value

and implements the interface `iglu.comfort` 1.0.0 (PROTOCOL.md section
12), so Rust programs call it through a typed client:

  iglu.comfort.average  {"room": str} -> {"ok": {"room", "celsius", "readings"}}
                                         or {"err": "no_readings"}

Everything a plugin must do is here: the magic cookie check, HELLO with the
launch token, WELCOME/REJECT, heartbeats both ways with the host's liveness
rule, CALL/REPLY/ERROR, EVENT batches with CREDIT, GOODBYE either way, and
a clean exit on SIGTERM/SIGINT. Exit codes follow the Rust SDK.
"""

import ctypes
import os
import signal
import sys
import time

import msgpack
import zmq

COOKIE_KEY, COOKIE_VALUE = "IGLU_PLUGIN", "MzlK0OGpIRs"
WINDOW = 64  # events the host may have in flight to us


def pack(kind, fields):
    return msgpack.packb({kind: fields}, use_bin_type=True)


def unpack(frame):
    message = msgpack.unpackb(frame, raw=False)
    if not isinstance(message, dict) or len(message) != 1:
        raise ValueError("not a protocol message")
    (kind, fields), = message.items()
    return kind, fields


def main():
    if os.environ.get(COOKIE_KEY) != COOKIE_VALUE:
        print("comfort: this program is an Iglu plugin: it is started by the iglu host, not run directly",
              file=sys.stderr)
        return 1
    # Die with the host, even if it is SIGKILLed: PR_SET_PDEATHSIG (1) = SIGKILL,
    # then make sure the host did not die before that took effect.
    host_pid = os.environ.get("IGLU_HOST_PID")
    if host_pid and sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != int(host_pid):
            print("comfort: the host that started this plugin has already exited", file=sys.stderr)
            return 2
    endpoint = os.environ["IGLU_ENDPOINT"]
    plugin_id = os.environ.get("IGLU_PLUGIN_ID", "comfort")
    handshake_ms = int(os.environ.get("IGLU_HANDSHAKE_TIMEOUT_MS", "10000"))

    stop = {"signal": None}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(signal="SIGTERM"))
    signal.signal(signal.SIGINT, lambda *_: stop.update(signal="SIGINT"))

    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 200)  # flush GOODBYE before exit; no ZMTP heartbeats (PROTOCOL.md 1)
    sock.connect(endpoint)
    sock.send(pack("hello", {
        "cookie": COOKIE_VALUE,
        "versions": [1],
        "plugin_id": plugin_id,
        "token": os.environ.get("IGLU_TOKEN", ""),
        "manifest": {"id": "comfort", "name": "Comfort", "author": "Iglu developers",
                     "version": "0.1.0", "description": "Average temperature per room (Python)"},
        "methods": ["average", "rooms", "echo", "iglu.comfort.average"],
        "subscriptions": ["home/+/temperature"],
        "interfaces": [{
            "name": "iglu.comfort", "version": "1.0.0",
            "methods": [{"name": "average", "args": [{"name": "room", "type": "String"}],
                         "result": "RoomAverage", "error": "ComfortError"}],
        }],
    }))
    if not sock.poll(handshake_ms):
        print(f"comfort: no answer from the host at {endpoint} within {handshake_ms} ms", file=sys.stderr)
        return 4
    kind, fields = unpack(sock.recv())
    if kind == "reject":
        print(f"comfort: the host rejected the handshake ({fields['code']}): {fields['message']}", file=sys.stderr)
        return 3
    if kind != "welcome":
        print(f"comfort: expected WELCOME, got {kind}", file=sys.stderr)
        return 2
    interval = fields["heartbeat_ms"] / 1000.0
    dead_after = interval * fields["liveness"]
    print(f"comfort: connected, session {fields['session'].hex()}", file=sys.stderr, flush=True)

    sock.send(pack("credit", {"events": WINDOW}))
    rooms = {}  # room -> [sum, count]
    last_heard = last_sent = time.monotonic()

    def answer(call_id, result=None, error=None):
        if error:
            sock.send(pack("error", {"id": call_id, "code": error[0], "message": error[1]}))
        else:
            sock.send(pack("reply", {"id": call_id, "result": msgpack.packb(result, use_bin_type=True)}))

    def serve(method, args):
        if method == "echo":
            return args
        if method == "rooms":
            return sorted(rooms)
        if method == "average":
            if not isinstance(args, dict) or not isinstance(args.get("room"), str):
                raise TypeError("average takes {\"room\": str}")
            total, count = rooms.get(args["room"], (0.0, 0))
            return {"room": args["room"], "celsius": round(total / count, 2) if count else None,
                    "readings": count}
        if method == "iglu.comfort.average":
            # An interface method: the answer is {"ok": ...} or {"err": ...}.
            if not isinstance(args, dict) or not isinstance(args.get("room"), str):
                raise TypeError("iglu.comfort.average takes {\"room\": str}")
            total, count = rooms.get(args["room"], (0.0, 0))
            if not count:
                return {"err": "no_readings"}
            return {"ok": {"room": args["room"], "celsius": round(total / count, 2), "readings": count}}
        raise LookupError(method)

    while True:
        if stop["signal"]:
            sock.send(pack("goodbye", {"reason": f"plugin received {stop['signal']}"}))
            return 0
        now = time.monotonic()
        if now - last_sent >= interval:
            sock.send(pack("heartbeat", {}))
            last_sent = now
        if now - last_heard > dead_after:
            print(f"comfort: the host has been silent for {now - last_heard:.1f} s; exiting", file=sys.stderr)
            return 2
        try:
            if not sock.poll(int(interval * 250)):
                continue
        except zmq.ZMQError:
            continue  # interrupted by a signal: the loop checks `stop`
        frames = sock.recv_multipart()
        last_heard = time.monotonic()
        try:
            kind, fields = unpack(frames[0])
        except Exception as exc:  # noqa: BLE001 - a bad frame must not kill the plugin
            print(f"comfort: dropping a bad frame: {exc}", file=sys.stderr)
            continue
        if kind == "event":
            # An EVENT message holds header/body frame pairs, one per event.
            pairs = [(frames[i], frames[i + 1]) for i in range(0, len(frames) - 1, 2)]
            for _, body in pairs:
                event = msgpack.unpackb(body, raw=False)
                room = event["topic"].split("/")[1]
                reading = msgpack.unpackb(event["payload"], raw=False)
                if isinstance(reading, dict) and isinstance(reading.get("celsius"), (int, float)):
                    total, count = rooms.get(room, (0.0, 0))
                    rooms[room] = (total + reading["celsius"], count + 1)
            sock.send(pack("credit", {"events": len(pairs)}))
            continue
        # Any other message may be a batch: one protocol message per frame (PROTOCOL.md 1).
        for i, frame in enumerate(frames):
            if i > 0:
                try:
                    kind, fields = unpack(frame)
                except Exception as exc:  # noqa: BLE001 - a bad frame must not kill the plugin
                    print(f"comfort: dropping a bad frame: {exc}", file=sys.stderr)
                    continue
            if kind == "call":
                try:
                    answer(fields["id"], serve(fields["method"], msgpack.unpackb(fields["args"], raw=False)))
                except LookupError as exc:
                    answer(fields["id"], error=("method_not_found", f"no method named {exc}"))
                except (TypeError, ValueError) as exc:
                    answer(fields["id"], error=("bad_arguments", str(exc)))
                except Exception as exc:  # noqa: BLE001 - a failing handler must not kill the plugin
                    answer(fields["id"], error=("handler_error", str(exc)))
            elif kind == "goodbye":
                sock.send(pack("goodbye", {"reason": "host said goodbye"}))
                return 0
            # heartbeat, reply, error, cancel: nothing to do (any message is a sign of life)

if __name__ == "__main__":
    sys.exit(main())
