"""Loading user functions and running tracked calls (spec 6.3 code contract, 6.4 nested calls, D-34 steps).

- CodeCache compiles each function's code once per code_hash; every call execs it into a fresh module dict,
  so no global set by one job (or one user) is visible to the next.
- A Run is one execution. It exposes the callable scope to the code: each namespace as an object
  (`payments.charge({...})`), all of them in the mapping `namespaces` (`namespaces["class"].x(...)` for
  names that are keywords, builtins or not identifiers), and each callable function under its bare name
  (the spec 6.3 contract, the running function's own namespace winning on collisions) unless that name is
  a builtin. The code's own definitions and json/datetime/uuid take precedence over all of them.
- Every call through the scope, and the top-level call, is a Step: RUNNING when it starts, COMPLETED/FAILED
  when it ends, linked to the caller's step through the Run's stack. Its input, output, error and traceback
  are cut to their size bounds (sinas_wire.MAX_FIELD_BYTES): the step records a call, it does not carry data.
"""

import builtins
import datetime
import hashlib
import json
import keyword
import linecache
import os
import time
import traceback
import types
import uuid
from collections import OrderedDict

from sinas_wire import bound_json, elapsed_ms, now_iso, truncate_text

PREIMPORTS = {"json": json, "datetime": datetime, "uuid": uuid}
RUNTIME_DIR = os.path.dirname(os.path.abspath(__file__))


class FunctionNotFound(LookupError):
    """The code ran but defines no callable global with the function's name."""


def describe(exc):
    """`Type: message`, or just `Type` when the message is empty (like Python's own last traceback line)."""
    try:
        if isinstance(exc, SyntaxError) and exc.msg:  # str() would cut our `<ns/name>` filename to `name>`
            message = f"{exc.msg} ({exc.filename}, line {exc.lineno})"
        else:
            message = str(exc)
    except Exception:
        message = "<unprintable message>"
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def user_traceback(exc):
    """The formatted traceback (with chained causes) minus the runtime's own frames, which only confuse users."""
    root = traceback.TracebackException.from_exception(exc)
    pending, seen = [root], set()
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        frames = [f for f in current.stack if not _internal(f.filename)]
        current.stack = traceback.StackSummary.from_list(frames)
        pending += [current.__cause__, current.__context__, *(getattr(current, "exceptions", None) or [])]
    return "".join(root.format())


def _internal(filename):
    """Whether a frame belongs to the runtime itself (user code is compiled under names like `<ns/name>`)."""
    return not filename.startswith("<") and os.path.abspath(filename).startswith(RUNTIME_DIR + os.sep)


class CodeCache:
    """(code_hash, filename) -> compiled module code, least recently used evicted beyond `limit` entries."""

    def __init__(self, limit=256):
        self._codes = OrderedDict()
        self._limit = limit
        self.compiles = 0

    def get(self, namespace, name, code, code_hash):
        """Compiled code of one function; registers the source with linecache so tracebacks show its lines."""
        filename = f"<{namespace}/{name}>"
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        key = (code_hash or hashlib.sha256(code.encode()).hexdigest(), filename)
        compiled = self._codes.get(key)
        if compiled is None:
            compiled = compile(code, filename, "exec", dont_inherit=True)
            self.compiles += 1
            self._codes[key] = compiled
            while len(self._codes) > self._limit:
                self._codes.popitem(last=False)
        else:
            self._codes.move_to_end(key)
        return compiled


class Step:
    """One tracked call; sends itself when it starts and when it ends."""

    def __init__(self, run, namespace, name, input_value):
        self._run = run
        self._start = time.perf_counter()
        self.record = {
            "id": str(uuid.uuid4()),
            "parent_id": run.stack[-1] if run.stack else None,
            "namespace": namespace,
            "name": name,
            "status": "RUNNING",
            "input": bound_json(input_value),
            "started_at": now_iso(),
        }
        run.send_step(self.record)

    def complete(self, output):
        self._finish("COMPLETED", output=bound_json(output))

    def fail(self, exc=None, error=None):
        """FAILED with the exception's description and user traceback, or with a plain error message."""
        if exc is not None:
            self._finish("FAILED", error=truncate_text(describe(exc)), traceback=truncate_text(user_traceback(exc)))
        else:
            self._finish("FAILED", error=truncate_text(error))

    def _finish(self, status, **fields):
        self.record = {**self.record, **fields, "status": status, "completed_at": now_iso()}
        self.record["duration_ms"] = elapsed_ms(self._start)
        self._run.send_step(self.record)


class Run:
    """One execution: context, callable scope, the stack of running step ids and the job its messages belong
    to (a paused generator's Run continues under the job id of the resume message)."""

    def __init__(self, job_id, callable_scope, context, cache, emit):
        self.job_id = job_id
        self.context = context
        self.callable = callable_scope if isinstance(callable_scope, dict) else {}
        self.stack = []
        self._cache = cache
        self._emit = emit
        self.namespaces = {ns: Namespace(self, ns) for ns in self.callable}
        self._scopes = {}  # namespace -> globals every function of that namespace starts from

    def send_step(self, record):
        self._emit({"type": "step", "job_id": self.job_id, "step": record})

    def load(self, namespace, name, code, code_hash):
        """Execs the function's code into a fresh module dict and returns its global `name`."""
        compiled = self._cache.get(namespace, name, code, code_hash)
        scope = self._scope(namespace)
        module = {"__builtins__": builtins, "__name__": f"sinas.{namespace}.{name}", **scope}
        exec(compiled, module)
        fn = module.get(name)
        if not callable(fn) or fn is scope.get(name) or isinstance(fn, Namespace):
            raise FunctionNotFound(f"Function '{namespace}/{name}' not found: its code defines no function '{name}'")
        return fn

    def call(self, namespace, name, input_value, context):
        """A nested call `namespace.name(input)`: load the callee, run it as a child step, re-raise failures."""
        entry = self.callable[namespace][name]
        fn = self.load(namespace, name, entry.get("code", ""), entry.get("code_hash", ""))
        step = Step(self, namespace, name, input_value)
        try:
            value = self.within(step, fn, input_value, context)
        except BaseException as exc:
            step.fail(exc)
            raise
        step.complete(value)
        return value

    def within(self, step, fn, *args):
        """Calls fn(*args) with `step` as the parent of any call it makes."""
        self.stack.append(step.record["id"])
        try:
            return fn(*args)
        finally:
            self.stack.pop()

    def _scope(self, own_namespace):
        """Globals injected into code of `own_namespace`, lowest precedence first (see the module docstring)."""
        scope = self._scopes.get(own_namespace)
        if scope is None:
            scope = {}
            for ns in sorted(self.callable, key=lambda n: n == own_namespace):
                for fname in self.callable[ns]:
                    if _injectable(fname):
                        scope[fname] = FunctionProxy(self, ns, fname)
            scope.update({ns: obj for ns, obj in self.namespaces.items() if _injectable(ns)})
            scope.update(PREIMPORTS)
            scope["namespaces"] = types.MappingProxyType(self.namespaces)
            self._scopes[own_namespace] = scope
        return scope


def _injectable(name):
    """Whether a global of that name may be injected: never a keyword/non-identifier or a builtin's name."""
    return isinstance(name, str) and name.isidentifier() and not keyword.iskeyword(name) and not hasattr(builtins, name)


class Namespace:
    """`payments` in `payments.charge(...)`: attribute (or item) access to the functions of one namespace."""

    __slots__ = ("_sinas_run", "_sinas_name")

    def __init__(self, run, name):
        self._sinas_run = run
        self._sinas_name = name

    def __getattr__(self, fname):
        functions = self._sinas_run.callable[self._sinas_name]
        if fname.startswith("__") or fname not in functions:
            available = ", ".join(sorted(functions)) or "none"
            raise AttributeError(
                f"Namespace '{self._sinas_name}' has no function '{fname}' callable from here (available: {available})"
            )
        return FunctionProxy(self._sinas_run, self._sinas_name, fname)

    def __getitem__(self, fname):
        return self.__getattr__(fname)

    def __dir__(self):
        return sorted(self._sinas_run.callable[self._sinas_name])

    def __repr__(self):
        return f"<namespace '{self._sinas_name}': {', '.join(self.__dir__())}>"


class FunctionProxy:
    """A callable scope function: `fn(input)`, `fn(input, context)` or `fn(**input)`; the context defaults to
    the execution's own."""

    __slots__ = ("_run", "_namespace", "__name__")

    def __init__(self, run, namespace, name):
        self._run = run
        self._namespace = namespace
        self.__name__ = name

    def __call__(self, *args, **kwargs):
        label = f"{self._namespace}.{self.__name__}"
        if len(args) > 2 or (args and kwargs):
            raise TypeError(f"{label}() takes (input, context=None) or keyword arguments forming the input")
        input_value = args[0] if args else kwargs
        context = args[1] if len(args) == 2 else self._run.context
        return self._run.call(self._namespace, self.__name__, input_value, context)

    def __repr__(self):
        return f"<function {self._namespace}/{self.__name__}>"
