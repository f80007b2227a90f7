"""The hello app in Python: the same functions as examples/hello, plus a
scheduled `tick` and calls between functions. Build and run it with
`modal run app.py::square 7`, run its local entrypoint with
`modal run app.py --name Ada`, or deploy it with `modal deploy app.py`
(then `modal call python-hello sum_squares '[1,2,3]'` answers 14)."""

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


@app.function()
def sum_squares(xs):
    """Sums the squares of `xs`, squared in parallel by `square`."""
    return sum(square.map(xs))


@app.function()
def square_later(x):
    """Squares `x` in a spawned call, then waits for its result."""
    return square.spawn(x).get()


@app.function()
def try_fail():
    """Calls `fail` and returns the error it raised, as `Type: message`."""
    try:
        fail.remote()
    except modal.exception.Error as e:
        return f"{type(e).__name__}: {e}"
    return "fail did not fail"


@app.function()
def relay(app_name, function, input=None):
    """Calls `function` of the deployed app `app_name` with `input`;
    returns its result, or the error it raised as `Type: message`."""
    try:
        return modal.Function.from_name(app_name, function).remote(input)
    except modal.exception.Error as e:
        return f"{type(e).__name__}: {e}"


visits = modal.Dict.from_name("visits")


@app.function()
def visit(name):
    """Counts the visits of `name` in the app's durable `visits` bucket and
    returns what it stored there."""
    record = visits.get(name, {"name": name, "visits": 0})
    record["visits"] += 1
    visits[name] = record
    return {"record": visits[name], "known": name in visits, "keys": list(visits.keys())}


@app.local_entrypoint()
def main(name="world", n=3):
    """What `modal run app.py` runs: greets `--name`, then squares 1..`--n`
    through the host."""
    print(f"Hello, {name}!")
    print(f"square(7) = {square.remote(7)}")
    xs = list(range(1, n + 1))
    print(f"squares of {xs}: {list(square.map(xs))}, summing to {sum_squares.remote(xs)}")
