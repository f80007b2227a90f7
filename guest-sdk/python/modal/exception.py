"""The errors modal raises, all subclasses of `modal.exception.Error`.

A failed call to another function (`f.remote(...)`, `f.spawn(...).get()`,
`f.map(...)`) raises the class of its failure; every error carries the
failure's `kind`, as the host names it, and its message (`str(e)`):

==================  ==========================  ==============================
kind                class                       when
==================  ==========================  ==============================
``not-found``       `NotFoundError`             no such app or function, or
                                                the app does not allow the
                                                caller (`--allow-caller`)
``bad-input``       `InvalidError`              the callee could not take its
                                                arguments
``failed``          `RemoteError`               the callee raised; the message
                                                is its `Type: message`
``timeout``         `FunctionTimeoutError`      the callee ran past its timeout
                                                or the caller's remaining time
``memory-limit``    `ResourceExhaustedError`    the callee passed its memory
                                                limit
``overloaded``      `ResourceExhaustedError`    every instance of the callee
                                                stayed busy
``trap``            `ExecutionError`            the callee crashed
``cancelled``       `ExecutionError`            its version was stopped
``depth-exceeded``  `ExecutionError`            calls nested too deeply
``other``           `ExecutionError`            anything else
==================  ==========================  ==============================
"""

import builtins
from typing import Optional

__all__ = [
    "Error",
    "ExecutionError",
    "FunctionTimeoutError",
    "InvalidError",
    "NotFoundError",
    "RemoteError",
    "ResourceExhaustedError",
    "TimeoutError",
]


class Error(Exception):
    """The base of modal's errors: `kind` names the failure, `message`
    (also `str(e)`) says what happened."""

    kind = "other"

    def __init__(self, message: str = "", *, kind: Optional[str] = None):
        super().__init__(message)
        self.message = message
        if kind is not None:
            self.kind = kind


class NotFoundError(Error):
    """No such app or function, or the app does not allow this caller (the
    same answer either way)."""

    kind = "not-found"


class InvalidError(Error):
    """The arguments could not be encoded as JSON, or the callee could not
    take them."""

    kind = "bad-input"


class RemoteError(Error):
    """The callee raised: the message is its error text, `Type: message`."""

    kind = "failed"


class ExecutionError(Error):
    """The callee crashed, was cancelled or nested too deeply, or the host
    could not run the call; `kind` says which."""


class ResourceExhaustedError(Error):
    """The callee passed its memory limit (`memory-limit`), or all its
    instances stayed busy (`overloaded`)."""

    kind = "overloaded"


class TimeoutError(Error, builtins.TimeoutError):
    """The base of modal's timeouts (also a built-in `TimeoutError`); raised
    as it is by `FunctionCall.get(timeout=...)` when the call is still
    running."""

    kind = "timeout"


class FunctionTimeoutError(TimeoutError):
    """The callee ran past its timeout, or past the time its caller had
    left."""


_CLASSES = {
    "not-found": NotFoundError,
    "bad-input": InvalidError,
    "failed": RemoteError,
    "trap": ExecutionError,
    "timeout": FunctionTimeoutError,
    "memory-limit": ResourceExhaustedError,
    "overloaded": ResourceExhaustedError,
    "cancelled": ExecutionError,
    "depth-exceeded": ExecutionError,
    "other": ExecutionError,
}


def _from_kind(kind: str, message: str) -> Error:
    """The error for a failure of `kind` (a `call-failure` case)."""
    return _CLASSES.get(kind, ExecutionError)(message, kind=kind)
