"""Write modal functions in Python.

Decorate ordinary functions; `modal build app.py` turns the module into a
WebAssembly component (with componentize-py) that the modal host runs::

    import modal

    app = modal.App("hello")

    @app.function()
    def square(x):
        return x * x

    @app.web(method="GET")
    def greet(request):
        return f"Hello, {request.query.get('name', 'world')}!"

    @app.function(schedule=modal.Cron("0 * * * * *"), retries=2)
    def tick():
        print("tick", modal.run_id())

Arguments and results are JSON: a function with one parameter takes the
whole input as it, one with several takes an object keyed by parameter
name (or a list in order). An exception fails the call; its traceback goes
to the call's logs. Module-level code runs once, at build time.

Calls between functions
-----------------------

The decorators return a `Function`. Calling it directly runs it here, in
this process (as does `.local(...)`); through the host, a function calls
the functions of its own app (on its own version) and those of other apps
that granted it (`modal deploy --allow-caller APP`)::

    @app.function()
    def sum_squares(xs):
        return sum(square.map(xs))          # in parallel, results in order

    @app.function()
    def later(x):
        call = square.spawn(x)              # stored, runs at least once
        return call.get(timeout=10)         # or .get() to wait on

    @app.function()
    def elsewhere(x):
        f = modal.Function.from_name("other-app", "f")
        return f.remote(x)

    @app.local_entrypoint()
    def main(name="world"):
        print(f"Hello {name}:", square.remote(7))

`.remote(*args, **kwargs)` sends the arguments by the rule above: for a
function of this module they are bound to its signature (one parameter:
its value; several: an object keyed by name); for one found by name,
keyword arguments make an object, one positional argument is the input,
several an array (so pass a one-parameter function found by name its
argument positionally). `.map(xs, ys)` takes one iterable per parameter.

A failed call raises a `modal.exception.Error` of its kind: the callee's
exception arrives as `RemoteError` with its text (`ValueError: ...`), an
unknown or refused app or function as `NotFoundError`, a timeout as
`FunctionTimeoutError` (see `modal.exception`).

`modal run app.py --name Ada` runs the `@app.local_entrypoint()` on the
local host, where its calls reach the app's own functions (other apps need
a server): `--NAME VALUE` gives a parameter (a value that parses as JSON
is that JSON, else a string), `--NAME` alone is `true`. What it prints is
the command's output. The entrypoint is also a plain function of the app,
deployed with the others.
"""

import functools
import inspect
import json
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional

from modal import exception

__all__ = ["App", "Cron", "Dict", "Function", "FunctionCall", "Mount", "Period", "Request",
           "Response", "Secret", "exception", "run_id"]

SDK = "modal-guest-python 0.1.0"

# How long one wait of `FunctionCall.get()` (without a timeout) lasts
# before it asks again; the host cuts it to the caller's remaining time.
GET_WAIT_MS = 60_000


@dataclass
class Cron:
    """A cron schedule with seconds: `sec min hour day month weekday`."""

    expression: str
    tz: Optional[str] = None


@dataclass
class Period:
    """A fixed period between runs."""

    seconds: float = 0
    minutes: float = 0
    hours: float = 0

    def millis(self) -> int:
        return int((self.seconds + 60 * self.minutes + 3600 * self.hours) * 1000)


class Request:
    """An HTTP request as a web function sees it. Its headers and body are
    read when first used (`headers`; `body`, `text` or `json()`), which
    must be while the web function runs: a function that never looks at
    them does not wait for them (a body left unread is read after the
    answer, except in a GET, HEAD, OPTIONS or TRACE request)."""

    __slots__ = ("method", "path", "query", "_headers", "_body", "_read_headers", "_read")

    def __init__(self, method: str, path: str, query: Optional[dict] = None,
                 headers: Optional[dict] = None, body: bytes = b""):
        self.method = method
        self.path = path
        self.query = {} if query is None else query
        self._headers = {} if headers is None else headers
        self._body = body
        self._read_headers = None  # reads the headers, until they are read
        self._read = None  # reads the body, until it is read

    @property
    def headers(self) -> dict:
        """The headers, by lower-case name."""
        if self._read_headers is not None:
            read, self._read_headers = self._read_headers, None
            self._headers = read()
        return self._headers

    @headers.setter
    def headers(self, headers: dict):
        self._read_headers = None
        self._headers = headers

    @property
    def body(self) -> bytes:
        if self._read is not None:
            read, self._read = self._read, None
            self._body = read()
        return self._body

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body)

    def __repr__(self) -> str:
        return (f"Request(method={self.method!r}, path={self.path!r}, query={self.query!r}, "
                f"headers={self.headers!r}, body={self.body!r})")

    def __eq__(self, other) -> bool:
        if not isinstance(other, Request):
            return NotImplemented
        return ((self.method, self.path, self.query, self.headers, self.body)
                == (other.method, other.path, other.query, other.headers, other.body))


@dataclass
class Response:
    """An HTTP response from a web function."""

    body: object = b""
    status: int = 200
    headers: dict = field(default_factory=dict)


@dataclass
class _Function:
    name: str
    func: Callable
    kind: str  # "plain", "web" or "scheduled"
    schedule: object = None
    method: Optional[str] = None
    timeout: Optional[float] = None
    retries: Optional[int] = None
    min_warm: Optional[int] = None
    max_instances: Optional[int] = None
    max_requests: Optional[int] = None
    secrets: list = field(default_factory=list)


@dataclass
class Secret:
    """A secret created with `modal secret create`, by name: its variables
    are in the environment of the app's instances (`os.environ`)."""

    name: str

    @classmethod
    def from_name(cls, name: str) -> "Secret":
        """The secret `name`; a deploy fails naming it if it does not exist."""
        return cls(name)


@dataclass(frozen=True)
class Mount:
    """A local directory the app's instances see read-only at
    `remote_path`. `modal build` (and `modal deploy app.py`) reads the
    `Mount.from_local_dir("dist", remote_path="/assets")` calls of the
    module, with string literals, and packs the directory, relative to the
    module, at deploy as `--mount dist:/assets` would."""

    local_dir: str
    remote_path: str

    @classmethod
    def from_local_dir(cls, local_path, *, remote_path: str) -> "Mount":
        """The directory `local_path`, mounted at `remote_path` (absolute)."""
        if not isinstance(remote_path, str) or not remote_path.startswith("/"):
            raise ValueError("remote_path must be an absolute path such as /assets")
        return cls(str(local_path), remote_path)


def _check_mounts(mounts) -> None:
    for m in mounts or []:
        if not isinstance(m, Mount):
            raise TypeError("mounts must be modal.Mount.from_local_dir(...)")


def _secret_names(secrets) -> list:
    names = []
    for s in secrets or []:
        if not isinstance(s, Secret):
            raise TypeError("secrets must be modal.Secret.from_name(...)")
        names.append(s.name)
    return names


# Filled at import time (build time); the component keeps it.
_FUNCTIONS: dict = {}
_HOOKS: dict = {"enter": None, "exit": None}


class App:
    """Collects the decorated functions of one app."""

    def __init__(self, name: Optional[str] = None, *, mounts=None):
        """`mounts`: `modal.Mount.from_local_dir(...)` for every function."""
        _check_mounts(mounts)
        self.name = name

    def _register(self, func, kind, **settings):
        name = func.__name__
        if name in _FUNCTIONS:
            raise ValueError(f"function `{name}` is declared twice")
        _FUNCTIONS[name] = _Function(name=name, func=func, kind=kind, **settings)
        return Function(name, func=func)

    def function(self, *, schedule=None, timeout=None, retries=None, min_warm=None,
                 max_instances=None, max_requests=None, secrets=None, mounts=None):
        """A plain function, or a scheduled one with `schedule=Cron(...)` or
        `Period(...)`. `timeout` is in seconds; `secrets` is a list of
        `modal.Secret.from_name(...)` attached at deploy; `mounts` a list of
        `modal.Mount.from_local_dir(...)` (seen by every instance of the
        app)."""
        _check_mounts(mounts)
        if schedule is not None and not isinstance(schedule, (Cron, Period)):
            raise TypeError("schedule must be modal.Cron(...) or modal.Period(...)")
        kind = "plain" if schedule is None else "scheduled"

        def decorate(func):
            return self._register(func, kind, schedule=schedule, timeout=timeout, retries=retries,
                                  min_warm=min_warm, max_instances=max_instances,
                                  max_requests=max_requests, secrets=_secret_names(secrets))

        return decorate

    def web(self, *, method=None, timeout=None, min_warm=None, max_instances=None,
            max_requests=None, secrets=None, mounts=None):
        """A web function: takes a `Request` (or nothing), returns a
        `Response`, a string, bytes or a JSON-able value."""
        _check_mounts(mounts)

        def decorate(func):
            return self._register(func, "web", method=method.upper() if method else None,
                                  timeout=timeout, min_warm=min_warm,
                                  max_instances=max_instances, max_requests=max_requests,
                                  secrets=_secret_names(secrets))

        return decorate

    def local_entrypoint(self, *unexpected):
        """The function `modal run app.py` runs when no function is named;
        its parameters come from the command line (`--name value`). It is
        a plain function of the app too."""
        if unexpected:
            raise TypeError("write @app.local_entrypoint(), with parentheses")

        def decorate(func):
            return self._register(func, "plain")

        return decorate

    def enter(self, func):
        """Runs once per instance, before its first call."""
        _HOOKS["enter"] = func
        return func

    def exit(self, func):
        """Runs before a healthy instance is dropped."""
        _HOOKS["exit"] = func
        return func


class Function:
    """A function of an app: what the decorators return, or what
    `Function.from_name` finds. Calling it runs it here (as `.local` does);
    `.remote`, `.spawn` and `.map` run it through the host."""

    def __init__(self, name: str, *, app_name: Optional[str] = None,
                 func: Optional[Callable] = None):
        self._name = name
        # None: the caller's own app, on the caller's version.
        self._app_name = app_name
        self._func = func
        if func is not None:
            functools.update_wrapper(self, func)

    @classmethod
    def from_name(cls, app_name: str, name: str) -> "Function":
        """Function `name` of the deployed app `app_name`; calls into
        another app need its grant (`modal deploy --allow-caller`)."""
        return cls(name, app_name=app_name)

    def __repr__(self):
        where = f"{self._app_name}." if self._app_name is not None else ""
        return f"<modal.Function {where}{self._name}>"

    def __call__(self, *args, **kwargs):
        return self.local(*args, **kwargs)

    def local(self, *args, **kwargs):
        """Runs the function here, in this process."""
        if self._func is None:
            raise exception.InvalidError(
                f"`{self._name}` of `{self._app_name}` was found by name and has no code here; "
                "call it with .remote(...)")
        return self._func(*args, **kwargs)

    def remote(self, *args, **kwargs):
        """Calls the function through the host and waits for its result."""
        from modal import _world

        output = _world.invoke_call(self._app_name, self._name, _encode(self._func, args, kwargs))
        return _decode(self._name, output)

    def spawn(self, *args, **kwargs) -> "FunctionCall":
        """Starts the function in the background and returns at once; the
        host stores the call and runs it at least once."""
        from modal import _world

        call_id = _world.invoke_spawn(self._app_name, self._name, _encode(self._func, args, kwargs))
        return FunctionCall(call_id, self._name)

    def map(self, *inputs, kwargs: Optional[dict] = None,
            return_exceptions: bool = False) -> Iterator:
        """Calls the function once per input, in parallel on up to its
        `max_instances` instances, and returns an iterator of the results in
        input order. A function of several parameters takes one iterable
        per parameter (`f.map(xs, ys)` calls `f(xs[0], ys[0])`, ...);
        `kwargs` go to every call. A failed call raises when its result is
        reached, or takes its place with `return_exceptions=True`."""
        from modal import _world

        if not inputs:
            raise TypeError("map takes an iterable of inputs (one per parameter)")
        encoded = [_encode(self._func, args, kwargs or {}) for args in zip(*inputs)]
        outcomes = _world.invoke_map(self._app_name, self._name, encoded)
        return _results(self._name, outcomes, return_exceptions)


class FunctionCall:
    """A spawned call: `object_id` is its id (also what `modal result`
    takes), `get` waits for its result."""

    def __init__(self, object_id: str, function: str = "the spawned call"):
        self.object_id = object_id
        self._function = function

    @classmethod
    def from_id(cls, function_call_id: str) -> "FunctionCall":
        """A spawned call by its id, e.g. one stored earlier."""
        return cls(function_call_id)

    @property
    def id(self) -> str:
        """The call's id (the same as `object_id`)."""
        return self.object_id

    def __repr__(self):
        return f"<modal.FunctionCall {self.object_id}>"

    def get(self, timeout: Optional[float] = None):
        """The call's result, waiting for it up to `timeout` seconds (None:
        as long as the caller's own timeout allows); raises
        `modal.exception.TimeoutError` if it is still running then, or the
        call's error if it failed."""
        from modal import _world

        if timeout is None:
            while True:
                output = _world.invoke_get(self.object_id, GET_WAIT_MS)
                if output is not None:
                    return _decode(self._function, output)
        output = _world.invoke_get(self.object_id, max(0, int(timeout * 1000)))
        if output is None:
            raise exception.TimeoutError(
                f"the call {self.object_id} has not finished within {timeout:g} s")
        return _decode(self._function, output)


@functools.lru_cache(maxsize=None)
def _cached_signature(func):
    return inspect.signature(func)


def _signature(func) -> inspect.Signature:
    """`inspect.signature(func)`, worked out once per function: it is
    written in Python, and in the guest's interpreter it costs more than a
    small handler's whole run."""
    try:
        return _cached_signature(func)
    except TypeError:  # an unhashable callable
        return inspect.signature(func)


def _parameters(func) -> list:
    """The parameters a JSON input fills (not `*args` or `**kwargs`)."""
    return [p for p in _signature(func).parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.POSITIONAL_ONLY, p.KEYWORD_ONLY)]


# The input of a call that passes no arguments.
_NOTHING = object()


def _input_value(func, args, kwargs):
    """The JSON value for a call with `args` and `kwargs`, as the callee
    decodes it (see `_world._arguments`)."""
    if func is not None:
        every = _signature(func).parameters.values()
        if all(p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) for p in every):
            # A TypeError here is the one calling it here would raise.
            bound = _signature(func).bind(*args, **kwargs).arguments
            params = _parameters(func)
            if len(params) == 1:
                return bound.get(params[0].name, _NOTHING)
            return dict(bound) if params else _NOTHING
    if args and kwargs:
        raise exception.InvalidError(
            "pass either positional or keyword arguments to a function found by name, not both")
    if kwargs:
        return dict(kwargs)
    if len(args) == 1:
        return args[0]
    return list(args) if args else _NOTHING


def _encode(func, args, kwargs) -> bytes:
    value = _input_value(func, args, kwargs)
    if value is _NOTHING:
        return b""
    try:
        return json.dumps(value).encode()
    except (TypeError, ValueError) as e:
        raise exception.InvalidError(f"the arguments could not be encoded as JSON: {e}") from None


def _decode(function: str, output: bytes):
    # A function without a result answers `null`, or nothing.
    if not output:
        return None
    try:
        return json.loads(output)
    except ValueError as e:
        raise exception.ExecutionError(f"the output of `{function}` is not JSON: {e}") from None


def _results(function, outcomes, return_exceptions):
    for outcome in outcomes:
        if not isinstance(outcome, exception.Error):
            try:
                outcome = _decode(function, outcome)
            except exception.Error as e:
                outcome = e
        if isinstance(outcome, exception.Error) and not return_exceptions:
            raise outcome
        yield outcome


class Dict:
    """A named bucket of the app's durable key-value state, as Modal's
    `modal.Dict`: shared by all instances and versions of the app, kept
    across redeploys and restarts. Keys are strings (others are JSON-encoded);
    values are JSON::

        index = modal.Dict.from_name("index")
        index["ada"] = {"visits": 1}
        if "ada" in index: ...
    """

    def __init__(self, name: str):
        self.name = name

    @classmethod
    def from_name(cls, name: str, *, create_if_missing: bool = True) -> "Dict":
        """The bucket `name` (created on first write)."""
        return cls(name)

    def __repr__(self):
        return f"<modal.Dict {self.name}>"

    def _call(self, operation, *args):
        from modal import _world

        return _world.kv_call(self.name, operation, *args)

    @staticmethod
    def _key(key) -> str:
        import json

        return key if isinstance(key, str) else json.dumps(key)

    def get(self, key, default=None):
        """The value at `key`, or `default`."""
        import json

        value = self._call("get", self._key(key))
        return default if value is None else json.loads(value)

    def __getitem__(self, key):
        import json

        value = self._call("get", self._key(key))
        if value is None:
            raise KeyError(key)
        return json.loads(value)

    def put(self, key, value) -> None:
        """Stores `value` (JSON) at `key`."""
        import json

        self._call("set", self._key(key), json.dumps(value).encode())

    __setitem__ = put

    def __contains__(self, key) -> bool:
        return self._call("exists", self._key(key))

    def __delitem__(self, key):
        if key not in self:
            raise KeyError(key)
        self._call("delete", self._key(key))

    def pop(self, key, *default):
        """Removes `key` and returns its value (or `default`)."""
        if key not in self:
            if default:
                return default[0]
            raise KeyError(key)
        value = self[key]
        self._call("delete", self._key(key))
        return value

    def incr(self, key, delta: int = 1) -> int:
        """Adds `delta` to the number at `key` (0 when absent) in one step."""
        return self._call("increment", self._key(key), delta)

    def keys(self):
        """Every key, in order."""
        cursor = None
        while True:
            page = self._call("list_keys", cursor)
            yield from page.keys
            if page.cursor is None:
                return
            cursor = page.cursor

    def __iter__(self):
        return self.keys()

    def items(self):
        """Every (key, value), in key order."""
        for key in self.keys():
            yield key, self.get(key)


def run_id() -> Optional[str]:
    """The id of the scheduled run in progress (the same for every retry of
    one fire time), or None."""
    # Imported through the entry module, which is loaded at build time (a
    # module first imported at run time would not be in the component).
    from modal import _world

    return _world.context.run_id() if _world.context is not None else None
