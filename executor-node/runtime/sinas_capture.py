"""Turns everything user code writes into `log` messages, so the runtime never writes to its own stdout/stderr.

Two layers:
- Python level: sys.stdout/sys.stderr are replaced by LogStream objects (print, sys.stdout.write, tracebacks
  that threading prints, from any thread).
- fd level: fds 1 and 2 are redirected into pipes drained by one daemon thread into the same LogStreams, so
  output of subprocesses (os.system) and C code is captured too and never reaches the sandbox's real stdout.
Output is attributed to the job running when it is flushed; output written between jobs is dropped (a message
for a job must not follow that job's result).
"""

import codecs
import io
import os
import select
import sys
import threading

from sinas_wire import now_iso

CHUNK_BYTES = 8192  # protocol limit for one log text


def utf8_chunks(text, limit=CHUNK_BYTES):
    """Splits text into pieces of at most `limit` UTF-8 bytes without cutting a character in two."""
    data = text.encode("utf-8", "surrogatepass")
    start = 0
    while start < len(data):
        end = min(start + limit, len(data))
        while start < end < len(data) and data[end] & 0xC0 == 0x80:
            end -= 1  # back off to the first byte of the character
        yield data[start:end].decode("utf-8", "surrogatepass")
        start = end


class LogStream(io.TextIOBase):
    """A text stream that buffers writes and sends them as log messages on newline, size or flush()."""

    def __init__(self, capture, name, fd):
        super().__init__()
        self._capture = capture
        self._name = name
        self._fd = fd
        self._buffer = []
        self._size = 0
        self._lock = threading.RLock()

    @property
    def encoding(self):
        return "utf-8"

    def writable(self):
        return True

    def isatty(self):
        return False

    def fileno(self):
        """The redirected fd, so `subprocess.run(..., stdout=sys.stdout)` is captured as well."""
        if self._fd is None:
            raise io.UnsupportedOperation("fileno")
        return self._fd

    def write(self, text):
        """Buffers user text; starting a new line first sends pending fd-level output (e.g. of a subprocess
        that just finished), so it keeps its place before this line."""
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if not self._buffer:
            self._capture.drain_pipes()
        return self._append(text)

    def _append(self, text):
        """Adds text and sends complete lines (or everything past the chunk size). The pipe reader calls this
        on its own streams: it holds the pipe lock that write() would take."""
        with self._lock:
            self._buffer.append(text)
            self._size += len(text)
            if "\n" in text or self._size >= CHUNK_BYTES:
                self._send(self._take(whole=self._size >= CHUNK_BYTES))
        return len(text)

    def flush(self):
        """Sends everything buffered (user flush(), or the runtime before a step/result message)."""
        with self._lock:
            self._send(self._take(whole=True))

    def _take(self, whole):
        """Removes and returns the buffered text, up to the last newline unless `whole`."""
        text = "".join(self._buffer)
        cut = len(text) if whole else text.rfind("\n") + 1
        rest = text[cut:]
        self._buffer = [rest] if rest else []
        self._size = len(rest)
        return text[:cut]

    def _send(self, text):
        job_id = self._capture.job_id
        if not text or job_id is None:
            return
        for piece in utf8_chunks(text):
            self._capture.channel.send(
                {"type": "log", "job_id": job_id, "stream": self._name, "text": piece, "at": now_iso()}
            )


class OutputCapture:
    """Owns the LogStreams (Python level and fd level) and the fd redirection; `begin`/`end` bracket the
    output of one job."""

    def __init__(self, channel, redirect_fds=True):
        self.channel = channel
        self.job_id = None
        self._pipes = {}  # pipe read fd -> (LogStream, incremental decoder)
        self._pipe_lock = threading.Lock()
        self.stdout = LogStream(self, "stdout", 1 if redirect_fds else None)
        self.stderr = LogStream(self, "stderr", 2 if redirect_fds else None)
        # fd-level output has line buffers of its own: partial lines of two sources must never mix.
        self._fd_streams = [LogStream(self, "stdout", 1), LogStream(self, "stderr", 2)] if redirect_fds else []
        if redirect_fds:
            self._redirect_fds()
        self.install()

    def install(self):
        """(Re)installs the streams: user code may have replaced sys.stdout in a previous job."""
        sys.stdout = self.stdout
        sys.stderr = self.stderr

    def begin(self, job_id):
        self.install()
        self.job_id = job_id

    def flush(self):
        """Sends pending output of both layers, so logs precede the step/result message that follows."""
        self.drain_pipes()
        for stream in (*self._fd_streams, self.stdout, self.stderr):
            stream.flush()

    def end(self):
        self.flush()
        self.job_id = None

    def _redirect_fds(self):
        """Points fds 1 and 2 at pipes and starts the reader thread (small stack: RLIMIT_AS may be tight)."""
        for fd, stream in zip((1, 2), self._fd_streams):
            read_fd, write_fd = os.pipe()
            os.dup2(write_fd, fd)
            os.close(write_fd)
            os.set_blocking(read_fd, False)
            self._pipes[read_fd] = (stream, codecs.getincrementaldecoder("utf-8")("replace"))
        previous = threading.stack_size(256 * 1024)
        try:
            threading.Thread(target=self._pump, name="sinas-fd-capture", daemon=True).start()
        finally:
            threading.stack_size(previous)

    def _pump(self):
        """Reader thread: forwards pipe data as it arrives, so a chatty subprocess never blocks on a full pipe."""
        while self._pipes:
            try:
                ready, _, _ = select.select(list(self._pipes), [], [], 1.0)
            except (OSError, ValueError):
                return
            if ready:
                self.drain_pipes(ready)

    def drain_pipes(self, fds=None):
        """Reads whatever is in the pipes now. Reading and forwarding share one lock, so after a drain by the
        message loop everything written so far has reached the LogStreams."""
        with self._pipe_lock:
            for fd in list(fds if fds is not None else self._pipes):
                stream, decoder = self._pipes.get(fd, (None, None))
                while stream is not None:
                    try:
                        data = os.read(fd, 65536)
                    except BlockingIOError:
                        break
                    if not data:  # user code closed fd 1 or 2: stop watching that pipe
                        del self._pipes[fd]
                        break
                    text = decoder.decode(data)
                    if text:
                        stream._append(text)
