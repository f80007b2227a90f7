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
"""

from dataclasses import dataclass, field
from typing import Callable, Optional

__all__ = ["App", "Cron", "Period", "Request", "Response", "run_id"]

SDK = "modal-guest-python 0.1.0"


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


@dataclass
class Request:
    """An HTTP request as a web function sees it (the body is read whole)."""

    method: str
    path: str
    query: dict
    headers: dict
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self):
        import json

        return json.loads(self.body)


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


# Filled at import time (build time); the component keeps it.
_FUNCTIONS: dict = {}
_HOOKS: dict = {"enter": None, "exit": None}


class App:
    """Collects the decorated functions of one app."""

    def __init__(self, name: Optional[str] = None):
        self.name = name

    def _register(self, func, kind, **settings):
        name = func.__name__
        if name in _FUNCTIONS:
            raise ValueError(f"function `{name}` is declared twice")
        _FUNCTIONS[name] = _Function(name=name, func=func, kind=kind, **settings)
        return func

    def function(self, *, schedule=None, timeout=None, retries=None, min_warm=None,
                 max_instances=None, max_requests=None):
        """A plain function, or a scheduled one with `schedule=Cron(...)` or
        `Period(...)`. `timeout` is in seconds."""
        if schedule is not None and not isinstance(schedule, (Cron, Period)):
            raise TypeError("schedule must be modal.Cron(...) or modal.Period(...)")
        kind = "plain" if schedule is None else "scheduled"

        def decorate(func):
            return self._register(func, kind, schedule=schedule, timeout=timeout, retries=retries,
                                  min_warm=min_warm, max_instances=max_instances,
                                  max_requests=max_requests)

        return decorate

    def web(self, *, method=None, timeout=None, min_warm=None, max_instances=None,
            max_requests=None):
        """A web function: takes a `Request` (or nothing), returns a
        `Response`, a string, bytes or a JSON-able value."""

        def decorate(func):
            return self._register(func, "web", method=method.upper() if method else None,
                                  timeout=timeout, min_warm=min_warm,
                                  max_instances=max_instances, max_requests=max_requests)

        return decorate

    def enter(self, func):
        """Runs once per instance, before its first call."""
        _HOOKS["enter"] = func
        return func

    def exit(self, func):
        """Runs before a healthy instance is dropped."""
        _HOOKS["exit"] = func
        return func


def run_id() -> Optional[str]:
    """The id of the scheduled run in progress (the same for every retry of
    one fire time), or None."""
    # Imported through the entry module, which is loaded at build time (a
    # module first imported at run time would not be in the component).
    from modal import _world

    return _world.context.run_id() if _world.context is not None else None
