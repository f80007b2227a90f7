#!/usr/bin/env bash
# Web endpoint throughput on loopback: modal's `greet` (examples/hello, an
# SDK web function) and the plain wasi:http example under wrk, and, with
# --with-wasmtime, the same components under `wasmtime serve` (wasmtime-cli
# of the same wasmtime version, installed into .cache/wasmtime by this
# script) in its fastest setting, printing the ratio.
#
# Usage: host/benches/web.sh [--with-wasmtime] [-d SECONDS] [-c CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/../.."

with_wasmtime=0 duration=10 connections=32
while [ $# -gt 0 ]; do
    case "$1" in
        --with-wasmtime) with_wasmtime=1 ;;
        -d) duration="$2"; shift ;;
        -c) connections="$2"; shift ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release -q -p modal-host
cargo build --release -q --target wasm32-wasip2 --manifest-path examples/Cargo.toml --target-dir target/guests
modal=target/release/modal
guests=target/guests/wasm32-wasip2/release
port=18181

wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on $port" >&2
    return 1
}

# Prints "REQ_PER_S P50 P99" for a wrk run against $1.
measure() {
    wrk -t2 -c"$connections" -d"${duration}s" --latency "$1" >/tmp/modal-wrk.txt
    local rps p50 p99
    rps=$(awk '/Requests\/sec/ {print $2}' /tmp/modal-wrk.txt)
    p50=$(awk '$1 == "50%" {print $2}' /tmp/modal-wrk.txt)
    p99=$(awk '$1 == "99%" {print $2}' /tmp/modal-wrk.txt)
    errors=$(awk '/Non-2xx|Socket errors/' /tmp/modal-wrk.txt)
    [ -z "$errors" ] || echo "  wrk reported: $errors" >&2
    echo "$rps $p50 $p99"
}

declare -A results
run_modal() {
    local name="$1" wasm="$2" path="$3"
    "$modal" serve "$wasm" --listen "127.0.0.1:$port" >/dev/null &
    local pid=$!
    wait_port
    curl -fsS "http://127.0.0.1:$port$path" >/dev/null
    results["modal $name"]=$(measure "http://127.0.0.1:$port$path")
    kill "$pid"; wait "$pid" 2>/dev/null || true
}

run_wasmtime() {
    local name="$1" wasm="$2" path="$3" label="$4"; shift 4
    # SDK components also import modal:app/context, which wasmtime lacks.
    # SDK components also import modal:app/context, which wasmtime lacks.
    "$wasmtime" serve -S cli=y -W unknown-imports-trap=y --addr "127.0.0.1:$port" "$@" "$wasm" >/dev/null 2>&1 &
    local pid=$!
    if ! wait_port || ! curl -fsS "http://127.0.0.1:$port$path" >/dev/null; then
        echo "wasmtime serve could not serve $name" >&2
        kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
        return 0
    fi
    results["wasmtime $label $name"]=$(measure "http://127.0.0.1:$port$path")
    kill "$pid"; wait "$pid" 2>/dev/null || true
}

run_modal greet "$guests/hello.wasm" "/?name=bench"
run_modal plain "$guests/http_plain.wasm" "/"

# Python: the same greet, built with componentize-py (see .ci/setup).
python_wasm=target/bench-guests/python-hello.wasm
if [ -x .cache/venv/bin/componentize-py ]; then
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
    run_modal py-greet "$python_wasm" "/?name=bench"
    # Warm call latency through the control API: Rust hello vs Python.
    state=$(mktemp -d)
    "$modal" server --state "$state" --listen "127.0.0.1:$port" >/dev/null &
    server_pid=$!
    wait_port
    MODAL_STATE=$state MODAL_SERVER="http://127.0.0.1:$port" "$modal" deploy "$guests/hello.wasm" --name rs >/dev/null
    MODAL_STATE=$state MODAL_SERVER="http://127.0.0.1:$port" "$modal" deploy "$python_wasm" --name py >/dev/null
    token=$(cat "$state/token")
    for app in rs py; do
        cat >/tmp/modal-post.lua <<LUA
wrk.method = "POST"
wrk.body = "7"
wrk.headers["Authorization"] = "Bearer $token"
LUA
        wrk -t2 -c"$connections" -d"${duration}s" --latency -s /tmp/modal-post.lua \
            "http://127.0.0.1:$port/api/v1/apps/$app/functions/square/call" >/tmp/modal-wrk.txt
        results["modal call square ($app)"]="$(awk '/Requests\/sec/ {print $2}' /tmp/modal-wrk.txt) $(awk '$1 == "50%" {print $2}' /tmp/modal-wrk.txt) $(awk '$1 == "99%" {print $2}' /tmp/modal-wrk.txt)"
    done
    kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
    rm -rf "$state"
fi

if [ "$with_wasmtime" = 1 ]; then
    version=$(cargo metadata --format-version 1 --locked 2>/dev/null \
        | python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "wasmtime"))')
    wasmtime=.cache/wasmtime/bin/wasmtime
    if ! "$wasmtime" --version 2>/dev/null | grep -q "$version"; then
        cargo install -q wasmtime-cli --version "$version" --locked --root .cache/wasmtime
    fi
    for w in greet:hello.wasm:/?name=bench plain:http_plain.wasm:/; do
        IFS=: read -r name file path <<<"$w"
        run_wasmtime "$name" "$guests/$file" "$path" fresh
        run_wasmtime "$name" "$guests/$file" "$path" reuse --max-instance-reuse-count 1000
    done
    if [ -f "$python_wasm" ]; then
        # wasmtime serve lacks modal:app/context: build without it. The
        # SDK's handler serves the only web function without the header.
        portable=target/bench-guests/python-hello-portable.wasm
        MODAL_COMPONENTIZE_PY=.cache/venv/bin/componentize-py "$modal" build --portable examples/python-hello/app.py -o "$portable" 2>/dev/null
        run_wasmtime py-greet "$portable" "/?name=bench" fresh
        run_wasmtime py-greet "$portable" "/?name=bench" reuse --max-instance-reuse-count 1000
    fi
fi

printf '%-32s %12s %10s %10s\n' "setup (wrk -t2 -c$connections, ${duration}s)" "req/s" "p50" "p99"
for key in "${!results[@]}"; do
    read -r rps p50 p99 <<<"${results[$key]}"
    printf '%-32s %12s %10s %10s\n' "$key" "$rps" "$p50" "$p99"
done | sort
if [ "$with_wasmtime" = 1 ]; then
    for name in greet plain py-greet; do
        [ -n "${results["wasmtime reuse $name"]:-}" ] || continue
        ours=$(cut -d' ' -f1 <<<"${results["modal $name"]}")
        theirs=$(cut -d' ' -f1 <<<"${results["wasmtime reuse $name"]}")
        python3 -c "print(f'$name: modal / wasmtime serve (reuse 1000) = {$ours / $theirs:.2f}')"
    done
fi
