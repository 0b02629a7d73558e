"""NDJSON channel to the executor (PROTOCOL.md section 4) and the JSON/time helpers every runtime module uses.

Sending lives behind one lock because several threads send: the message loop (steps, results) and any thread
that writes output (user threads that print, the fd-capture reader).
"""

import datetime as _dt
import json
import os
import socket
import threading
import time

MAX_DEPTH = 32


def now_iso():
    """UTC timestamp with milliseconds and a 'Z' suffix, the format of every timestamp in the protocol."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def elapsed_ms(start):
    """Whole milliseconds since a time.perf_counter() value (the API stores durations as integers)."""
    return int(round((time.perf_counter() - start) * 1000))


def check_json(value):
    """Raises TypeError/ValueError/RecursionError unless value is strict JSON (no NaN/Infinity, which JS rejects)."""
    json.dumps(value, allow_nan=False)


def to_jsonable(value):
    """Best-effort JSON view of any value, for step inputs/outputs and yielded schemas.

    User functions may legitimately pass Python objects to each other; tracking must describe them, never fail.
    """
    try:
        check_json(value)
        return value
    except (TypeError, ValueError, RecursionError):
        return _convert(value, 0)


def _convert(value, depth):
    """Recursive part of to_jsonable: containers are walked, anything else becomes its repr."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else repr(value)
    if depth < MAX_DEPTH and isinstance(value, dict):
        return {str(key): _convert(item, depth + 1) for key, item in value.items()}
    if depth < MAX_DEPTH and isinstance(value, (list, tuple)):
        return [_convert(item, depth + 1) for item in value]
    try:
        return repr(value)[:2000]
    except Exception:  # a user __repr__ that raises must not break tracking
        return f"<unrepresentable {type(value).__name__}>"


class Channel:
    """The connection to the executor: NDJSON lines in, NDJSON lines out."""

    def __init__(self, path, connect_timeout=10.0):
        """Connects, retrying briefly: the executor may still be binding the socket when the sandbox starts."""
        deadline = time.monotonic() + connect_timeout
        while True:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                self._sock.connect(path)
                break
            except OSError:
                self._sock.close()
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)
        self._reader = self._sock.makefile("rb")
        self._lock = threading.Lock()
        self.closed = False
        # A process forked by user code shares this socket; only the runtime itself may speak on it.
        self.owner_pid = os.getpid()

    def send(self, message):
        """Writes one message as one line. ASCII-escaped JSON keeps lone surrogates from user text valid."""
        try:
            text = json.dumps(message, allow_nan=False)
        except (TypeError, ValueError, RecursionError):
            text = json.dumps(to_jsonable(message), allow_nan=False)
        line = (text + "\n").encode("ascii")
        if os.getpid() != self.owner_pid:
            return
        with self._lock:
            if self.closed:
                return
            try:
                self._sock.sendall(line)
            except OSError:
                self.closed = True  # the executor went away; the message loop ends on the next read

    def messages(self):
        """Yields each decoded message until the executor closes the socket; undecodable lines yield None."""
        for raw in self._reader:
            if not raw.strip():
                continue
            try:
                message = json.loads(raw)
            except ValueError:
                message = None
            yield message if isinstance(message, dict) else None
        self.closed = True
