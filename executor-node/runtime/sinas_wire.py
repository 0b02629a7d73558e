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
# Size bounds of what the runtime sends (PROTOCOL.md section 3). The executor enforces the same bounds
# (executor-node/src/event-limits.ts MAX_FIELD_BYTES, workers/lib/executor-protocol.ts MAX_RESULT_BYTES) and
# refuses lines longer than a result of MAX_RESULT_BYTES needs; cutting here keeps honest messages under that.
MAX_FIELD_BYTES = 64 * 1024  # a step's input/output JSON, an error, a traceback, a prompt, a pause's schema
MAX_RESULT_BYTES = 3 * 1024 * 1024  # a completed result's JSON
TRUNCATED_MARKER = "\u2026[truncated]"
_MARKER_BYTES = len(TRUNCATED_MARKER.encode("utf-8"))


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


def truncate_text(text, limit=MAX_FIELD_BYTES):
    """The text when it fits in `limit` UTF-8 bytes, else its start (cut at a character) plus the marker."""
    if len(text) * 4 <= limit:
        return text
    # Lone surrogates (possible in user text) become "?": the cut start must encode as strict UTF-8.
    head = text[: limit + 1].encode("utf-8", "replace")
    if len(text) <= limit and len(head) <= limit:
        return text
    end = max(0, limit - _MARKER_BYTES)
    while end > 0 and head[end] & 0xC0 == 0x80:  # not inside a character
        end -= 1
    return head[:end].decode("utf-8") + TRUNCATED_MARKER


def json_size(value):
    """UTF-8 bytes of a JSON-able value's compact JSON, and that JSON (not ASCII-escaped): what the executor and
    the API count (JSON.stringify: no spaces after `,` and `:`)."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return len(text.encode("utf-8", "replace")), text


def bound_json(value, limit=MAX_FIELD_BYTES):
    """A step's input or output as sent: its JSON view when that fits in `limit` bytes, else a marker with the
    JSON's size and start (the whole marker within `limit`: escaping at most doubles the preview)."""
    value = to_jsonable(value)
    size, text = json_size(value)
    if size <= limit:
        return value
    return {"truncated": True, "bytes": size, "preview": truncate_text(text, (limit - 100) // 2)}


def result_size_problem(value):
    """Why a completed result may not be sent (too large, as the executor and the API count it), or None."""
    size, _ = json_size(value)
    if size <= MAX_RESULT_BYTES:
        return None
    return (
        f"The result is {size} bytes of JSON; at most {MAX_RESULT_BYTES} are kept "
        "(return less, or store large data elsewhere, e.g. in state)"
    )


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
