#!/usr/bin/env bash
# Web endpoint throughput on loopback: modal's `greet` (examples/hello, an
# SDK web function), the plain wasi:http example and (when componentize-py
# is set up) the Python greet under wrk; with --with-wasmtime, the same
# components under `wasmtime serve` (wasmtime-cli of the same wasmtime
# version, installed into .cache/wasmtime by this script) in its fastest
# setting, `--max-instance-reuse-count 1000`.
#
# Both servers of a component run side by side on their own ports and are
# measured in alternation, ROUNDS times (the order flips every round), so
# that both see the same state of a shared, noisy machine; the figures are
# medians, and the ratio is the median of the per-round ratios. Each row
# also gives the server's CPU time per request (user and system, all its
# threads, read from /proc around each wrk run): what a request costs,
# beside the req/s it reaches on a machine it shares with wrk.
#
# With --with-wasmtime, the Python greet also runs under `wasmtime serve
# -W timeout=60s`: the epoch checks a timeout needs, which modal always
# has, slow interpreter-bound guest code by 10-15 %.
#
# With --with-wasmtime, a bare hyper hello server of the same shape
# (host/examples/bare_hyper.rs: no WebAssembly, no recording) joins the
# rounds of the Rust endpoints as the machine's limit, and two more show
# what the WebAssembly call and recording cost at the least:
# `bare-wasi-http`, the least a wasi:http host does, served with every
# technique of modal's web front (host/examples/bare_wasi_http.rs: a
# pinned single-threaded lane per core taking the connections of its CPU,
# batched answers sent with their length, mimalloc; a warm instance per
# request in flight, nothing else: no routing, limits, timeouts or
# recording), and `bare-wasi-http+rec`, the same host also recording every
# request in modal's SQLite store as modal's record writer does (one
# transaction per 20 ms): the most a host that records each execution in
# that store reaches here. The CPU time of one request in the bare host,
# in process (no sockets), is printed as well.
#
# With --baseline BIN, another modal binary (e.g. built from an earlier
# commit) serves the same component in the same alternating rounds, and
# the ratio modal / baseline is printed: what a change costs.
# MODAL_BIN=BIN serves as modal instead of the freshly built binary (to
# compare two experiments with each other).
#
# With --only NAME, only that endpoint (greet, plain or py-greet) runs.
#
# Usage: host/benches/web.sh [--with-wasmtime] [--baseline BIN] [--only NAME] [-d SECONDS] [-r ROUNDS] [-c CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/../.."

with_wasmtime=0 duration=5 rounds=5 connections=32 baseline="" only=""
while [ $# -gt 0 ]; do
    case "$1" in
        --with-wasmtime) with_wasmtime=1 ;;
        --baseline) baseline="$(realpath "$2")"; shift ;;
        --only) only="$2"; shift ;;
        -d) duration="$2"; shift ;;
        -r) rounds="$2"; shift ;;
        -c) connections="$2"; shift ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release -q -p modal-host --bins --example bare_hyper --example bare_wasi_http
cargo build --release -q --target wasm32-wasip2 --manifest-path examples/Cargo.toml --target-dir target/guests
modal=${MODAL_BIN:-target/release/modal}
guests=target/guests/wasm32-wasip2/release
wasmtime=.cache/wasmtime/bin/wasmtime
if [ "$with_wasmtime" = 1 ]; then
    version=$(cargo metadata --format-version 1 --locked 2>/dev/null \
        | python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "wasmtime"))')
    if ! "$wasmtime" --version 2>/dev/null | grep -q "$version"; then
        cargo install -q wasmtime-cli --version "$version" --locked --root .cache/wasmtime
    fi
fi

servers=() states=()
trap 'stop_all; rm -rf "${states[@]}"' EXIT

# Waits until $1 answers $2 with a 200 (as the Host $host, when set).
wait_ready() {
    for _ in $(seq 100); do
        curl -fsS -o /dev/null -H "Host: ${host:-localhost}" "http://127.0.0.1:$1$2" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# Prints "REQ_PER_S P50 P99 CPU_US" for a wrk run of $2 seconds against
# $1, with the Host header $host (modal routes by it; the others ignore
# it). CPU_US is the CPU time (user and system, all threads) the server
# with pid $3 spent per request, or - without one.
measure() {
    local out before after
    before=$(ticks "${3:-}")
    out=$(wrk -t2 -c"$connections" -d"$2s" --latency -H "Host: $host" "$1")
    after=$(ticks "${3:-}")
    errors=$(awk '/Non-2xx|Socket errors/' <<<"$out")
    [ -z "$errors" ] || echo "  wrk reported: $errors" >&2
    local rps
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    echo "$rps $(awk '$1 == "50%" {print $2}' <<<"$out") $(awk '$1 == "99%" {print $2}' <<<"$out") $(
        python3 -c "import sys; b, a, r, d = sys.argv[1:]; print('-' if '-' in (b, a) or not r else f'{(int(a) - int(b)) * 1e4 / (float(r) * float(d)):.1f}')" \
            "$before" "$after" "$rps" "$2")"
}

# The CPU time (user and system, in clock ticks of 10 ms) process $1 has
# used so far, or - without a pid (or once it has exited).
ticks() {
    { [ -n "$1" ] && awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null; } || echo -
}

# Starts a server (the command line given) and registers it for cleanup.
launch() {
    "$@" >/dev/null 2>&1 &
    servers+=($!)
}

# launch_modal BIN PORT WASM: `modal server` on a state directory of its
# own with WASM deployed as app `bench` (as in production: the web
# function is reached by the Host header, and every execution recorded).
launch_modal() {
    local bin="$1" port="$2" wasm="$3" state host=localhost
    state=$(mktemp -d)
    states+=("$state")
    launch "$bin" server --state "$state" --listen "127.0.0.1:$port"
    wait_ready "$port" /healthz || return 1
    MODAL_STATE=$state MODAL_SERVER="http://127.0.0.1:$port" "$bin" deploy "$wasm" --name bench >/dev/null
}

# Stops the servers started so far.
stop_all() {
    [ ${#servers[@]} -eq 0 ] || kill "${servers[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
    servers=()
}

results=()
# compare NAME WASM PATH: modal (and wasmtime reuse) in alternation.
compare() {
    [ -z "$only" ] || [ "$only" = "$1" ] || return 0
    local name="$1" wasm="$2" path="$3" port_modal=18181 port_wt=18182 port_base=18184 port_bare=18185 port_timeout=18186 port_floor=18187 port_rec=18188
    host="bench--$4.localhost"
    local labels=() ports=() pids=()
    # add LABEL PORT: the server launched last joins the rounds.
    add() { labels+=("$1"); ports+=("$2"); pids+=("${servers[-1]}"); }
    launch_modal "$modal" $port_modal "$wasm" && wait_ready $port_modal "$path" \
        || { echo "modal could not serve $name" >&2; return 1; }
    add modal $port_modal
    if [ -n "$baseline" ]; then
        if launch_modal "$baseline" $port_base "$wasm" && wait_ready $port_base "$path"; then
            add baseline $port_base
        else
            echo "the baseline could not serve $name" >&2
        fi
    fi
    if [ "$with_wasmtime" = 1 ]; then
        # SDK components also import modal:app/context, which wasmtime lacks.
        launch "$wasmtime" serve -S cli=y -W unknown-imports-trap=y \
            --addr "127.0.0.1:$port_wt" --max-instance-reuse-count 1000 "$wasm"
        if wait_ready $port_wt "$path"; then
            add wasmtime-reuse $port_wt
        else
            echo "wasmtime serve could not serve $name" >&2
        fi
        if [ "$name" != py-greet ]; then
            launch target/release/examples/bare_hyper "127.0.0.1:$port_bare"
            wait_ready $port_bare "$path" && add bare-hyper $port_bare
            launch target/release/examples/bare_wasi_http "127.0.0.1:$port_floor" "$wasm"
            wait_ready $port_floor "$path" && add bare-wasi-http $port_floor
            local record
            record=$(mktemp -d)
            states+=("$record")
            launch target/release/examples/bare_wasi_http "127.0.0.1:$port_rec" --record "$record" "$wasm"
            wait_ready $port_rec "$path" && add bare-wasi-http+rec $port_rec
            echo "$name: one request in the bare wasi:http host, in process: $(PATH_AND_QUERY="$path" \
                target/release/examples/bare_wasi_http --calls 50000 "$wasm") us CPU" >&2
        else
            # modal enforces a timeout on every execution, which needs
            # wasmtime's epoch checks in the guest code; wasmtime serve
            # only adds them when given one. For the interpreter-bound
            # Python guest that difference is measured as well.
            launch "$wasmtime" serve -S cli=y -W unknown-imports-trap=y,timeout=60s \
                --addr "127.0.0.1:$port_timeout" --max-instance-reuse-count 1000 "$wasm"
            if wait_ready $port_timeout "$path"; then
                add wasmtime-reuse-timeout $port_timeout
            fi
        fi
    fi
    for port in "${ports[@]}"; do wrk -t2 -c"$connections" -d1s -H "Host: $host" "http://127.0.0.1:$port$path" >/dev/null; done
    local runs=() order
    for round in $(seq "$rounds"); do
        order=$(seq 0 $((${#ports[@]} - 1)))
        [ $((round % 2)) = 0 ] && order=$(tac <<<"$order")
        for i in $order; do
            runs+=("$round ${labels[$i]} $(measure "http://127.0.0.1:${ports[$i]}$path" "$duration" "${pids[$i]}")")
        done
    done
    stop_all
    if [ "$with_wasmtime" = 1 ]; then
        # The fresh-instance setting, once, for reference.
        launch "$wasmtime" serve -S cli=y -W unknown-imports-trap=y \
            --addr "127.0.0.1:$port_wt" "$wasm"
        if wait_ready $port_wt "$path"; then
            runs+=("1 wasmtime-fresh $(measure "http://127.0.0.1:$port_wt$path" "$duration" "${servers[-1]}")")
        fi
        stop_all
    fi
    results+=("${runs[@]/#/$name }")
}

compare greet "$guests/hello.wasm" "/?name=bench" greet
compare plain "$guests/http_plain.wasm" "/" web

# Python: the same greet, built with componentize-py (see .ci/setup).
python_wasm=target/bench-guests/python-hello.wasm
if [ -x .cache/venv/bin/componentize-py ] && { [ -z "$only" ] || [ "$only" = py-greet ]; }; then
    mkdir -p target/bench-guests
    MODAL_COMPONENTIZE_PY=.cache/venv/bin/componentize-py "$modal" build examples/python-hello/app.py -o "$python_wasm" 2>/dev/null
    # Cold deploy: compile with an empty cache, then again from the cache.
    state=$(mktemp -d)
    start=$(date +%s.%N); MODAL_STATE=$state "$modal" describe "$python_wasm" >/dev/null; end=$(date +%s.%N)
    cold=$(python3 -c "print(f'{($end - $start) * 1000:.0f} ms')")
    start=$(date +%s.%N); MODAL_STATE=$state "$modal" describe "$python_wasm" >/dev/null; end=$(date +%s.%N)
    cached=$(python3 -c "print(f'{($end - $start) * 1000:.0f} ms')")
    rm -rf "$state"
    echo "python-hello load (describe): compile $cold, from the compiled-code cache $cached"
    # wasmtime serve lacks modal:app/context: the comparison runs the
    # --portable build (no context import) under both.
    portable=target/bench-guests/python-hello-portable.wasm
    MODAL_COMPONENTIZE_PY=.cache/venv/bin/componentize-py "$modal" build --portable examples/python-hello/app.py -o "$portable" 2>/dev/null
    compare py-greet "$portable" "/?name=bench" greet

fi

# Warm call latency through the control API: Rust hello vs Python.
if [ -x .cache/venv/bin/componentize-py ] && [ -z "$only" ]; then
    state=$(mktemp -d)
    port=18183
    launch "$modal" server --state "$state" --listen "127.0.0.1:$port"
    host=localhost wait_ready $port /healthz
    MODAL_STATE=$state MODAL_SERVER="http://127.0.0.1:$port" "$modal" deploy "$guests/hello.wasm" --name rs >/dev/null
    MODAL_STATE=$state MODAL_SERVER="http://127.0.0.1:$port" "$modal" deploy "$python_wasm" --name py >/dev/null
    token=$(cat "$state/token")
    for app in rs py; do
        cat >/tmp/modal-post.lua <<LUA
wrk.method = "POST"
wrk.body = "7"
wrk.headers["Authorization"] = "Bearer $token"
LUA
        out=$(wrk -t2 -c"$connections" -d"${duration}s" --latency -s /tmp/modal-post.lua \
            "http://127.0.0.1:$port/api/v1/apps/$app/functions/square/call")
        results+=("call-square-$app 1 modal $(awk '/Requests\/sec/ {print $2}' <<<"$out") $(awk '$1 == "50%" {print $2}' <<<"$out") $(awk '$1 == "99%" {print $2}' <<<"$out") -")
    done
    stop_all
    rm -rf "$state"
fi

printf '%s\n' "${results[@]}" >/tmp/modal-web-bench.txt
HEADER="endpoint / server (wrk -t2 -c$connections, ${duration} s x $rounds rounds)" python3 - /tmp/modal-web-bench.txt <<'PY'
import os, statistics, sys
from collections import defaultdict

runs = defaultdict(dict)  # (name, server) -> round -> (rps, p50, p99)
for line in open(sys.argv[1]):
    name, rnd, server, rps, p50, p99, cpu = line.split()
    runs[(name, server)][int(rnd)] = (float(rps), p50, p99, cpu)
print(f"{os.environ['HEADER']:<58} {'req/s':>9} {'p50':>9} {'p99':>9} {'cpu µs/req':>11}")
for (name, server), by_round in runs.items():
    rps = statistics.median(r[0] for r in by_round.values())
    mid = sorted(by_round.values(), key=lambda r: r[0])[len(by_round) // 2]
    cpus = [float(r[3]) for r in by_round.values() if r[3] != "-"]
    cpu = f"{statistics.median(cpus):.1f}" if cpus else "-"
    print(f"{name + ' / ' + server:<58} {rps:>9.0f} {mid[1]:>9} {mid[2]:>9} {cpu:>11}")
def ms(text):
    """wrk's latency (`812.00us`, `1.20ms`, `2.00s`) in ms."""
    for unit, factor in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float(text)

def spread(values, fmt):
    values = sorted(values)
    return f"min {fmt(values[0])}, median {fmt(statistics.median(values))}, max {fmt(values[-1])}"

print()
for name in dict.fromkeys(n for n, _ in runs):
    ours = runs.get((name, "modal"))
    for other, label, target in (("wasmtime-reuse", "wasmtime serve (reuse 1000)", 1.3),
                                 ("wasmtime-reuse-timeout", "wasmtime serve (reuse 1000, -W timeout: epoch checks as in modal)", None),
                                 ("bare-hyper", "bare hyper", 0.5),
                                 ("baseline", "baseline", None)):
        theirs = runs.get((name, other))
        if not ours or not theirs:
            continue
        ratios = [ours[r][0] / theirs[r][0] for r in ours if r in theirs]
        verdict = "" if target is None else (
            f"  target >= {target:.2f}: " + ("met" if statistics.median(ratios) >= target else "NOT met"))
        print(f"{name}: req/s modal / {label} = {statistics.median(ratios):.2f} "
              f"({spread(ratios, lambda v: f'{v:.2f}')} of {len(ratios)} rounds){verdict}")
    bare = runs.get((name, "bare-hyper"))
    for host, what in (("bare-wasi-http", "bare wasi:http host (modal's serving techniques; the call and nothing else)"),
                       ("bare-wasi-http+rec", "bare wasi:http host recording each request in modal's SQLite store")):
        floor = runs.get((name, host))
        if not bare or not floor:
            continue
        limits = [floor[r][0] / bare[r][0] for r in floor if r in bare]
        print(f"{name}: req/s {what} / bare hyper = {statistics.median(limits):.2f} "
              f"({spread(limits, lambda v: f'{v:.2f}')})")
        if ours:
            mine = [ours[r][0] / floor[r][0] for r in ours if r in floor]
            print(f"{name}: req/s modal / that host = {statistics.median(mine):.2f} "
                  f"({spread(mine, lambda v: f'{v:.2f}')})")
    theirs = runs.get((name, "wasmtime-reuse"))
    if ours and theirs:
        p99s = [(ms(ours[r][2]), ms(theirs[r][2])) for r in ours if r in theirs]
        median = statistics.median(a / b for a, b in p99s)
        print(f"{name}: p99 modal {spread([a for a, _ in p99s], lambda v: f'{v:.2f} ms')}; "
              f"wasmtime {spread([b for _, b in p99s], lambda v: f'{v:.2f} ms')}; "
              f"ratio {median:.2f}  target <= 1.00: " + ("met" if median <= 1.0 else "NOT met"))
PY
