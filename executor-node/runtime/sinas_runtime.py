"""SINAS resident Python runtime: runs user functions for the Node executor (executor-node/PROTOCOL.md, section 4).

Started as `python3 -u executor-node/runtime/sinas_runtime.py` inside a sandbox. It connects to the Unix socket
$SINAS_RUNTIME_SOCKET, announces itself with `ready`, then answers `execute`, `resume` and `ping` messages one
at a time until the executor closes the socket. Standard library only (the sandbox images carry nothing else).

Generators (spec 6.7): a function that is (or returns) a generator pauses at each `yield {"prompt", "schema"}`;
the generator, its Run and its top-level step stay in memory keyed by execution_id until a `resume` sends the
next input. While paused, the top-level step simply stays RUNNING (no message at a pause); it completes or
fails in the job that finishes the generator, with duration_ms counting wall-clock time including the pauses,
while each result's duration_ms counts only the time spent in that execute/resume.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # sibling modules, whatever the cwd
sys.dont_write_bytecode = True  # the runtime folder is read-only in sandboxes and part of the repository
if os.environ.get("SINAS_PACKAGES_DIR"):
    import site  # noqa: E402

    # This sandbox's pip packages (read-only): after the standard library, like site-packages; .pth files apply.
    site.addsitedir(os.environ["SINAS_PACKAGES_DIR"])

import inspect  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import signal  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from collections import OrderedDict  # noqa: E402

from sinas_calls import CodeCache, FunctionNotFound, Run, Step, describe, user_traceback  # noqa: E402
from sinas_capture import OutputCapture  # noqa: E402
from sinas_wire import (  # noqa: E402
    MAX_FIELD_BYTES,
    Channel,
    check_json,
    elapsed_ms,
    json_size,
    result_size_problem,
    to_jsonable,
    truncate_text,
)

DEFAULT_SOCKET = "/run/sinas/runtime.sock"
MAX_PAUSED = 100  # paused generators kept per sandbox; the oldest is dropped beyond that


def apply_limits(diagnostics):
    """Optional self-limits for drivers without cgroups (bwrap/process): address space, file size, processes.
    Applied after the fd-capture thread exists, since RLIMIT_NPROC also counts threads."""
    limits = (
        ("SINAS_LIMIT_MEMORY_MB", resource.RLIMIT_AS, 1024 * 1024),
        ("SINAS_LIMIT_FILE_MB", resource.RLIMIT_FSIZE, 1024 * 1024),
        ("SINAS_LIMIT_NPROC", resource.RLIMIT_NPROC, 1),
    )
    for env, which, unit in limits:
        raw = os.environ.get(env, "").strip()
        if not raw:
            continue
        try:
            wanted = int(raw) * unit
            _, hard = resource.getrlimit(which)
            value = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError) as exc:
            print(f"sinas_runtime: ignoring {env}={raw!r}: {exc}", file=diagnostics, flush=True)
            continue
        if which == resource.RLIMIT_FSIZE:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # oversized writes then fail with EFBIG, not a kill


class Paused:
    """A generator waiting for input, with the Run and top-level Step it continues."""

    def __init__(self, generator, run, step):
        self.generator = generator
        self.run = run
        self.step = step


class Runtime:
    """Dispatches messages and guarantees exactly one `result` per execute/resume job."""

    def __init__(self, channel, capture):
        self.channel = channel
        self.capture = capture
        self.cache = CodeCache()
        self.paused = OrderedDict()

    def emit(self, message):
        """Sends a job message after any output still buffered, so logs keep their place among steps."""
        self.capture.flush()
        self.channel.send(message)

    def handle(self, message):
        kind = message.get("type") if message else None
        if kind == "ping":
            self.channel.send({"type": "pong"})
            return
        job_id = message.get("job_id") if message else None
        if kind not in ("execute", "resume"):
            if job_id is not None:
                self.channel.send(failure(job_id, f"Unknown message type {kind!r}", "internal"))
            return
        self.capture.begin(job_id)
        try:
            result = self.execute(message) if kind == "execute" else self.resume(message)
        except BaseException as exc:  # a runtime bug must still answer the job
            result = failure(job_id, describe(exc), "internal", "".join(traceback.format_exception(exc)))
        self.capture.end()
        self.channel.send({**result, "job_id": job_id})

    def execute(self, message):
        """Loads and calls the top-level function; a generator is driven to its first pause."""
        job_id, function = message["job_id"], message["function"]
        namespace, name = function["namespace"], function["name"]
        self.paused.pop(message.get("execution_id"), None)
        context = message.get("context") or {}
        run = Run(job_id, message.get("callable"), context, self.cache, self.emit)
        start = time.perf_counter()
        try:
            fn = run.load(namespace, name, function["code"], function.get("code_hash", ""))
        except FunctionNotFound as exc:
            return failure(job_id, str(exc), "not_found", duration_ms=elapsed_ms(start))
        except BaseException as exc:  # SyntaxError, or module-level code that raised: no call happened
            return failure(job_id, describe(exc), error_type(exc), user_traceback(exc), elapsed_ms(start))
        input_value = message.get("input")
        step = Step(run, namespace, name, input_value)
        start = time.perf_counter()
        try:
            value = run.within(step, fn, input_value, context)
            if inspect.iscoroutine(value):
                import asyncio

                value = run.within(step, asyncio.run, value)
        except BaseException as exc:
            step.fail(exc)
            return failure(job_id, describe(exc), error_type(exc), user_traceback(exc), elapsed_ms(start))
        if inspect.isgenerator(value):
            return self.drive(message.get("execution_id"), Paused(value, run, step), None, start)
        return self.finish(step, value, start)

    def resume(self, message):
        """Sends the input into the generator paused for this execution."""
        execution_id = message.get("execution_id")
        paused = self.paused.pop(execution_id, None)
        if paused is None:
            error = f"No paused execution '{execution_id}' in this sandbox"
            return failure(message["job_id"], error, "not_found", duration_ms=0)
        paused.run.job_id = message["job_id"]
        return self.drive(execution_id, paused, message.get("input"), time.perf_counter())

    def drive(self, execution_id, paused, sent, start):
        """Advances the generator once: it pauses again (awaiting_input), returns (completed) or raises (failed)."""
        try:
            yielded = paused.run.within(paused.step, paused.generator.send, sent)
        except StopIteration as stop:
            return self.finish(paused.step, {} if stop.value is None else stop.value, start)
        except BaseException as exc:
            paused.step.fail(exc)
            return failure(paused.run.job_id, describe(exc), error_type(exc), user_traceback(exc), elapsed_ms(start))
        request = yielded if isinstance(yielded, dict) else {"prompt": str(yielded)}
        schema = to_jsonable(request.get("schema"))
        schema = schema if isinstance(schema, dict) else {}
        schema_bytes, _ = json_size(schema)
        if schema_bytes > MAX_FIELD_BYTES:  # the executor would refuse this pause: fail it here, as it would
            error = f"The yielded schema is {schema_bytes} bytes of JSON; at most {MAX_FIELD_BYTES} are kept"
            paused.step.fail(error=error)
            return failure(paused.run.job_id, error, "invalid_result", duration_ms=elapsed_ms(start))
        self.paused[execution_id] = paused
        while len(self.paused) > MAX_PAUSED:
            self.paused.popitem(last=False)
        return {
            "type": "result",
            "status": "awaiting_input",
            "prompt": truncate_text(str(request.get("prompt", ""))),
            "schema": schema,
            "duration_ms": elapsed_ms(start),
        }

    def finish(self, step, value, start):
        """Completes the top-level step and result, unless the value cannot travel as JSON."""
        duration = elapsed_ms(start)
        try:
            check_json(value)
            message = result_size_problem(value)
        except (TypeError, ValueError, RecursionError) as exc:
            message = f"Function result is not JSON-serializable: {exc}"
        if message:
            step.fail(error=message)
            return failure(None, message, "invalid_result", duration_ms=duration)
        step.complete(value)
        return {"type": "result", "status": "completed", "result": value, "duration_ms": duration}


def error_type(exc):
    return "memory" if isinstance(exc, MemoryError) else "exception"


def failure(job_id, error, kind, tb=None, duration_ms=None):
    """A failed `result` message (job_id is filled in by Runtime.handle when None); error and traceback are cut
    to their size bound (a str(exc) of megabytes would otherwise be refused, and the real error lost)."""
    result = {"type": "result", "job_id": job_id, "status": "failed", "error": truncate_text(error), "error_type": kind}
    if tb:
        result["traceback"] = truncate_text(tb)
    if duration_ms is not None:
        result["duration_ms"] = duration_ms
    return result


def main():
    """Connects, announces readiness and serves until the executor closes the socket."""
    diagnostics = os.fdopen(os.dup(2), "w")  # the sandbox's real stderr, for runtime failures only
    try:
        channel = Channel(os.environ.get("SINAS_RUNTIME_SOCKET") or DEFAULT_SOCKET)
    except OSError as exc:
        print(f"sinas_runtime: cannot connect to the executor: {exc}", file=diagnostics, flush=True)
        return 1
    runtime = Runtime(channel, OutputCapture(channel))
    apply_limits(diagnostics)
    channel.send({"type": "ready", "pid": os.getpid(), "python": platform.python_version()})
    try:
        for message in channel.messages():
            runtime.handle(message)
            if os.getpid() != channel.owner_pid:
                # A child forked by user code came back into the runtime: it must not serve the socket.
                os._exit(0)
            if channel.closed:
                break
    except BaseException:
        print(traceback.format_exc(), file=diagnostics, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    # os._exit: threads left running by user code must not keep the sandbox alive after the executor left.
    os._exit(main())
