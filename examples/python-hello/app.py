"""The hello app in Python: the same functions as examples/hello, plus a
scheduled `tick`. Build and run it with `modal run app.py::square 7`, or
deploy it with `modal deploy app.py`."""

import sys

import modal

app = modal.App("python-hello")


@app.function()
def square(x):
    """Squares a number."""
    return x * x


@app.web(method="GET")
def greet(request):
    """Greets `?name=` (or the world)."""
    return f"Hello, {request.query.get('name', 'world')}!"


@app.function(schedule=modal.Cron("* * * * * *"))
def tick():
    """Logs a tick every second."""
    print(f"tick (run {modal.run_id()})")


@app.function()
def fail():
    """Raises, so the traceback shows in the logs."""
    raise ValueError("fail raises on purpose")


@app.function()
def leave(exit):
    """Calls sys.exit when `exit` is true, which ends the instance."""
    if exit:
        sys.exit(3)
    return "stayed"


calls = 0


@app.function()
def count():
    """Counts the calls this instance has served."""
    global calls
    calls += 1
    return calls
