#!/usr/bin/env bash
# Two chat-server builds on --redis, side by side: the same three workloads
# (1 room x 10 members, 10 senders: 16 messages in flight per sender; one
# shared window of 10, about one in flight per sender; a paced 1,000
# messages/s) against build A and build B, alternating which goes first,
# ROUNDS times, then the medians. For measuring what a change to the Redis
# layer costs.
#
#   bench/redis-ab.sh A_BINARY B_BINARY [ROUNDS]   (default 5 rounds, ~30 s each)
#
# redis-server (no persistence, a free loopback port) and the server under
# test are pinned to CPU 0, chat-bench to CPU 1. Reports (chat-bench --json)
# and server logs go to bench/results/redis-ab-<time>/.
set -euo pipefail

usage() { echo "usage: bench/redis-ab.sh A_BINARY B_BINARY [ROUNDS]" >&2; exit 2; }
[ $# -ge 2 ] || usage
case "${1:-}" in -h|--help) usage ;; esac
a_bin="$1" b_bin="$2" rounds="${3:-5}"
for bin in "$a_bin" "$b_bin"; do
    [ -x "$bin" ] || { echo "redis-ab.sh: $bin is not an executable chat-server" >&2; exit 1; }
done
command -v redis-server >/dev/null || { echo "redis-ab.sh: redis-server is not installed (apt-get install redis-server)" >&2; exit 1; }
root="$(cd "$(dirname "$0")/.." && pwd)"
bench="$root/target/release/chat-bench"
[ -x "$bench" ] || { echo "redis-ab.sh: build chat-bench first: cargo build --release -p chat-bench" >&2; exit 1; }

out="$root/bench/results/redis-ab-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

redis_port="$(free_port)"
taskset -c 0 redis-server --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no \
    --loglevel warning >"$out/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done

declare -A binary=([a]="$a_bin" [b]="$b_bin")
for round in $(seq 1 "$rounds"); do
    order="a b"
    [ $((round % 2)) = 0 ] && order="b a"
    for build in $order; do
        port="$(free_port)"
        taskset -c 0 "${binary[$build]}" --addr "127.0.0.1:$port" --redis "redis://127.0.0.1:$redis_port" \
            --redis-prefix "ab$round$build" --rate-limit 0 >"$out/server-$build-$round.log" 2>&1 &
        server=$!
        pids+=("$server")
        for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.1; done
        for workload in pipelined shared paced; do
            case $workload in
                pipelined) args=(-r 1 -m 10 -s 10 -n 40000 -w 16) ;;
                shared) args=(-r 1 -m 10 -s 10 -n 20000 -w 10 --shared-window) ;;
                paced) args=(-r 1 -m 10 -s 10 -n 10000 --rate 1000 -w 16) ;;
            esac
            echo "round $round/$rounds: build $build, $workload" >&2
            taskset -c 1 "$bench" --json -q fanout --url "ws://127.0.0.1:$port" --server-pid "$server" \
                "${args[@]}" >"$out/$build-$workload-$round.json"
        done
        kill "$server"
        wait "$server" 2>/dev/null || true
    done
done

python3 - "$out" "$a_bin" "$b_bin" <<'PY'
import glob, json, statistics, sys
out, a, b = sys.argv[1:4]
print(f"A = {a}\nB = {b}\n")
print("| workload | build | deliveries/s (median, range) | p50 ms | p99 ms | server CPU µs/delivery | lost | errors |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for workload in ["pipelined", "shared", "paced"]:
    for build in ["a", "b"]:
        runs = [json.load(open(f)) for f in sorted(glob.glob(f"{out}/{build}-{workload}-*.json"))]
        med = lambda xs: statistics.median(xs)
        rate = [r["deliveries_per_sec"] for r in runs]
        print(f"| {workload} | {build.upper()} | {med(rate):,.0f} ({min(rate):,.0f}-{max(rate):,.0f}) "
              f"| {med([r['latency']['p50_us'] for r in runs]) / 1000:.2f} "
              f"| {med([r['latency']['p99_us'] for r in runs]) / 1000:.2f} "
              f"| {med([r['server']['cpu_us_per_delivery'] for r in runs]):.2f} "
              f"| {sum(r['lost'] for r in runs)} | {sum(r['errors'] for r in runs)} |")
PY
echo "reports: $out" >&2
