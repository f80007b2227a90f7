"""The component's exports: `describe`, `call`, the lifecycle hooks and the
`wasi:http` handler, implemented over the functions registered with
`modal.App`; and the calls of `modal.Function` over the host's `invoke`
import. `modal build` makes this the entry point; users never import it.

Every module used at run time is imported here, at the top: the component
is a snapshot taken after import, and a module first imported later is not
in it."""

import inspect
import json
import traceback
from urllib.parse import unquote_plus

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.exports import function as spec
from wit_world.imports import streams, types

try:  # absent from components built with `modal build --portable`
    from wit_world.imports import context, invoke
except ImportError:
    context = invoke = None
try:
    from wit_world.imports import atomics, store
except ImportError:
    atomics = store = None

import modal

# Bytes per `blocking-write-and-flush` (the most it takes).
WRITE_CHUNK = 4096
READ_CHUNK = 65536
FUNCTION_HEADER = "modal-function"


def _spec(f):
    if f.kind == "web":
        kind = spec.FunctionKind_Web(spec.WebRoute(method=f.method))
    elif f.kind == "scheduled":
        s = f.schedule
        if isinstance(s, modal.Cron):
            kind = spec.FunctionKind_Scheduled(spec.Schedule_Cron(spec.CronSchedule(expression=s.expression, timezone=s.tz)))
        else:
            kind = spec.FunctionKind_Scheduled(spec.Schedule_PeriodMs(s.millis()))
    else:
        kind = spec.FunctionKind_Plain()
    doc = (inspect.getdoc(f.func) or "").strip().split("\n\n")[0].replace("\n", " ") or None
    try:
        signature = f"{f.name}{inspect.signature(f.func)}"
    except (TypeError, ValueError):
        signature = None
    return spec.FunctionSpec(
        name=f.name,
        kind=kind,
        description=doc,
        signature=signature,
        timeout_ms=int(f.timeout * 1000) if f.timeout is not None else None,
        retries=f.retries,
        min_warm=f.min_warm,
        max_instances=f.max_instances,
        max_requests_per_instance=f.max_requests,
    )


def _arguments(f, input):
    """Turns JSON input bytes into (args, kwargs) for `f`."""
    text = input.decode("utf-8", "replace").strip()
    try:
        value = json.loads(text) if text else None
    except ValueError as e:
        raise Err(spec.CallError_BadInput(f"input is not valid JSON: {e}"))
    params = modal._parameters(f.func)
    if not params:
        if value not in (None, {}, []):
            raise Err(spec.CallError_BadInput(f"`{f.name}` takes no arguments, but was given {text[:60]}"))
        return [], {}
    if len(params) == 1:
        if value is None and params[0].default is inspect.Parameter.empty:
            raise Err(spec.CallError_BadInput(f"`{f.name}` takes an argument ({params[0].name}), but none was given"))
        return ([] if value is None else [value]), {}
    if isinstance(value, dict):
        return [], value
    if isinstance(value, list):
        return value, {}
    raise Err(spec.CallError_BadInput(f"`{f.name}` takes a JSON object keyed by parameter name"))


class Function(exports.Function):
    def describe(self):
        return spec.AppSpec(
            functions=[_spec(f) for f in modal._FUNCTIONS.values()],
            sdk=modal.SDK,
            has_enter=modal._HOOKS["enter"] is not None,
            has_exit=modal._HOOKS["exit"] is not None,
        )

    def call(self, function, input):
        f = modal._FUNCTIONS.get(function)
        if f is None or f.kind == "web":
            raise Err(spec.CallError_UnknownFunction(function))
        args, kwargs = _arguments(f, input)
        try:
            result = f.func(*args, **kwargs)
        except TypeError as e:
            traceback.print_exc()
            raise Err(spec.CallError_BadInput(f"invalid arguments for `{function}`: {e}"))
        except Exception as e:
            traceback.print_exc()
            raise Err(spec.CallError_Failed(f"{type(e).__name__}: {e}"))
        try:
            return json.dumps(result).encode()
        except (TypeError, ValueError) as e:
            raise Err(spec.CallError_Failed(f"the result could not be encoded as JSON: {e}"))


# The `call-failure` cases, by binding class name, as `modal.exception` kinds.
_FAILURE_KINDS = {
    "CallFailure_NotFound": "not-found",
    "CallFailure_BadInput": "bad-input",
    "CallFailure_Failed": "failed",
    "CallFailure_Trap": "trap",
    "CallFailure_Timeout": "timeout",
    "CallFailure_MemoryLimit": "memory-limit",
    "CallFailure_Overloaded": "overloaded",
    "CallFailure_Cancelled": "cancelled",
    "CallFailure_DepthExceeded": "depth-exceeded",
    "CallFailure_Other": "other",
}


def _failure(failure):
    """The `modal.exception` error for a `call-failure`."""
    kind = _FAILURE_KINDS.get(type(failure).__name__, "other")
    return modal.exception._from_kind(kind, failure.value)


def _invoke():
    if invoke is None:
        raise modal.exception.ExecutionError(
            "calling other functions needs the host's `invoke` import, "
            "which `modal build --portable` leaves out")
    return invoke


def invoke_call(app, function, input):
    """The output of `function` of `app` (None: the caller's) for `input`."""
    try:
        return _invoke().call(app, function, input)
    except Err as e:
        raise _failure(e.value) from None


def invoke_spawn(app, function, input):
    """The id of a new background call."""
    try:
        return _invoke().spawn(app, function, input)
    except Err as e:
        raise _failure(e.value) from None


def invoke_get(call_id, timeout_ms):
    """The output of a spawned call, or None while it runs."""
    try:
        return _invoke().get(call_id, timeout_ms)
    except Err as e:
        raise _failure(e.value) from None


def invoke_map(app, function, inputs):
    """One output (bytes) or `modal.exception.Error` per input, in order."""
    return [r.value if isinstance(r, Ok) else _failure(r.value)
            for r in _invoke().map(app, function, inputs)]


def _kv(what):
    if store is None:
        raise modal.exception.ExecutionError(
            f"{what} needs the host's `wasi:keyvalue` import, which `modal build --portable` "
            "leaves out")
    return store


def _kv_error(e):
    """The `modal.exception.Error` for a `wasi:keyvalue` error."""
    value = e.value
    if type(value).__name__ == "Error_Other":
        return modal.exception.Error(value.value)
    if type(value).__name__ == "Error_NoSuchStore":
        return modal.exception.NotFoundError("no such bucket")
    return modal.exception.Error("access to the bucket was denied")


def kv_call(bucket_name, operation, *args):
    """`operation` (`get`, `set`, `delete`, `exists`, `list_keys` or
    `increment`) on the bucket `bucket_name`, opened once per instance."""
    try:
        bucket = _BUCKETS.get(bucket_name)
        if bucket is None:
            bucket = _BUCKETS[bucket_name] = _kv("a modal.Dict").open(bucket_name)
        if operation == "increment":
            return atomics.increment(bucket, *args)
        return getattr(bucket, operation)(*args)
    except Err as e:
        raise _kv_error(e) from None


_BUCKETS = {}


if hasattr(exports, "Needs"):  # not in `modal build --portable` components
    class Needs(exports.Needs):
        def secrets(self):
            return sorted({s for f in modal._FUNCTIONS.values() for s in f.secrets})


class Lifecycle(exports.Lifecycle):
    def enter(self):
        hook = modal._HOOKS["enter"]
        if hook is not None:
            try:
                hook()
            except Exception as e:
                traceback.print_exc()
                raise Err(f"{type(e).__name__}: {e}")

    def exit(self):
        hook = modal._HOOKS["exit"]
        if hook is not None:
            hook()


# Method names by binding class (`Method_Get` is "GET").
_METHODS = {cls: name[len("Method_"):].upper() for name, cls in vars(types).items()
            if name.startswith("Method_") and name != "Method_Other"}


def _method(m):
    name = _METHODS.get(type(m))
    return name if name is not None else m.value.upper()


def _query(query_string):
    """The query's parameters, the first value of each, as
    `urllib.parse.parse_qs(..., keep_blank_values=True)` has them."""
    query = {}
    if query_string:
        for part in query_string.split("&"):
            if not part:
                continue
            name, _, value = part.partition("=")
            if "%" in part or "+" in part:
                name, value = unquote_plus(name), unquote_plus(value)
            query.setdefault(name, value)
    return query


def _read_body(request):
    """Reads the request's body whole; a callable, so that the body is
    read only when the web function looks at it."""
    def read():
        body = bytearray()
        incoming = request.consume()
        with incoming.stream() as stream:
            while True:
                try:
                    body.extend(stream.blocking_read(READ_CHUNK))
                except Err as e:
                    if isinstance(e.value, streams.StreamError_Closed):
                        break
                    raise
        return bytes(body)
    return read


# Methods whose requests carry no body in practice: one left unread is
# not read after the answer (that would need the headers).
_BODILESS = frozenset(("GET", "HEAD", "OPTIONS", "TRACE"))


def _may_have_body(request):
    """Whether `request` may have a body to read after the answer. The
    host keeps the headers of a chunked body (`transfer-encoding`) to
    itself, so without a `content-length` it may."""
    if request.method in _BODILESS:
        return False
    return request.headers.get("content-length") != "0"


def _gone(what):
    def gone():
        raise modal.exception.ExecutionError(
            f"the {what} of a request can only be read while its web function runs")
    return gone


_BODY_GONE, _HEADERS_GONE = _gone("body"), _gone("headers")


def _read_headers(request):
    """The request's headers by lower-case name, and the web function the
    host named in its header (the header itself left out)."""
    headers = {}
    target = None
    with request.headers() as fields:
        entries = fields.entries()
    for name, value in entries:
        name = name.lower()
        if name == FUNCTION_HEADER:
            target = value.decode("utf-8", "replace")
        else:
            headers[name] = value.decode("utf-8", "replace")
    return headers, target


_WEB = []  # the app's web functions, once known


def _web_functions():
    if not _WEB:
        _WEB.extend(f for f in modal._FUNCTIONS.values() if f.kind == "web")
    return _WEB


def _read_request(request):
    path_with_query = request.path_with_query() or "/"
    path, _, query_string = path_with_query.partition("?")
    req = modal.Request(_method(request.method()), path or "/", _query(query_string))
    req._read = _read_body(request)
    if len(_web_functions()) == 1:
        # The host names the function only when there are several: the
        # headers wait until the function asks for them.
        target = None
        req._read_headers = lambda: _read_headers(request)[0]
    else:
        req.headers, target = _read_headers(request)
    return target, req


TEXT = {"content-type": "text/plain; charset=utf-8"}


def _to_response(result):
    if type(result) is str:
        return 200, TEXT, result.encode()
    if isinstance(result, modal.Response):
        response = result
    elif result is None:
        response = modal.Response(status=204)
    elif isinstance(result, (str, bytes)):
        response = modal.Response(body=result)
    else:
        response = modal.Response(body=json.dumps(result), headers={"content-type": "application/json"})
    body = response.body
    headers = dict(response.headers)
    if isinstance(body, str):
        body = body.encode()
        headers.setdefault("content-type", TEXT["content-type"])
    return response.status, headers, bytes(body)


def _web_function(target):
    """The web function a request is for: the one named by the host, or
    (under another host, such as `wasmtime serve`) the only one."""
    if target:
        f = modal._FUNCTIONS.get(target)
        return f if f is not None and f.kind == "web" else None
    web = _web_functions()
    return web[0] if len(web) == 1 else None


def _route(target, request):
    f = _web_function(target)
    if f is None:
        return 404, {"content-type": "text/plain"}, f"no web function named `{target}`\n".encode()
    if f.method and f.method != request.method:
        return 405, {"allow": f.method}, f"`{f.name}` accepts {f.method} requests only\n".encode()
    takes_request = len(modal._signature(f.func).parameters) > 0
    try:
        return _to_response(f.func(request) if takes_request else f.func())
    except Exception as e:
        traceback.print_exc()
        return 500, {"content-type": "text/plain"}, f"{type(e).__name__}: {e}\n".encode()


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request, response_out):
        target, req = _read_request(request)
        try:
            status, headers, body = _route(target, req)
        finally:
            # A body the function left is read after the answer (left
            # unread, it would cut the connection, and the client's answer
            # could be lost to the reset), when there may be one.
            unread = req._read if req._read is not None and _may_have_body(req) else None
            if req._read is not None:
                req._read = _BODY_GONE
            if req._read_headers is not None:
                req._read_headers = _HEADERS_GONE
        fields = types.Fields.from_list([(k, v.encode()) for k, v in headers.items()])
        response = types.OutgoingResponse(fields)
        if status != 200:  # a new response has 200; every binding call costs µs
            response.set_status_code(status)
        outgoing = response.body()
        types.ResponseOutparam.set(response_out, Ok(response))
        with outgoing.write() as stream:
            for i in range(0, len(body), WRITE_CHUNK):
                stream.blocking_write_and_flush(body[i:i + WRITE_CHUNK])
        types.OutgoingBody.finish(outgoing, None)
        if unread is not None:
            # A client gone meanwhile has its answer; nothing is left to do.
            try:
                unread()
            except Err:
                pass
