#!/usr/bin/env bash
# bench/conns-100k.sh: 100,000 WebSocket connections on this machine, across
# several chat-server instances that share rooms through Redis.
#
#   bench/conns-100k.sh                       100,000 connections, 6 servers
#   bench/conns-100k.sh --connections 20000 --servers 2     a smaller run
#
# Options (each also from the environment variable in brackets):
#   --connections N   connections in all (CONNECTIONS, default 100000)
#   --servers N       chat-server processes (SERVERS, default 6); each must
#                     stay under the 20,000-file limit, so N >= C / 19000
#   --room-size N     members per room (ROOM_SIZE, default 100); connection
#                     i of a worker goes to server i % N, so every room has
#                     members on every server and its probe crosses Redis
#   --hold SECS       idle time before the probe (HOLD, default 10)
#   --sources N       loopback source addresses 127.0.0.1..N (SOURCES,
#                     default 8; each gives ~28,000 ports)
#
# What it does: builds chat-server and chat-bench (release), starts a
# redis-server on a free loopback port (no persistence), starts the servers
# with --redis, each pinned to CPU 0 and with its open-file limit at 20,000,
# then runs `chat-bench conns` pinned to CPU 1, spreading the connections
# over the servers (--extra-url) from worker processes of 10,000
# connections each (each under the file limit) and over the source
# addresses. After the hold, one member of every room sends a probe that
# every connection must receive. chat-bench reports the open rate, the
# servers' RSS per connection (summed over the servers, from /proc), the
# probe's latency percentiles and the connections that missed it. Every
# process it started is stopped by its PID at the end. Results go to
# bench/results/conns-100k-<stamp>/ (report.json, report.txt, server and
# Redis logs, machine.txt).
set -u -o pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

connections="${CONNECTIONS:-100000}"
servers="${SERVERS:-6}"
room_size="${ROOM_SIZE:-100}"
hold="${HOLD:-10}"
sources="${SOURCES:-8}"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --connections) connections="$2"; shift ;;
        --servers) servers="$2"; shift ;;
        --room-size) room_size="$2"; shift ;;
        --hold) hold="$2"; shift ;;
        --sources) sources="$2"; shift ;;
        -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
        *) echo "conns-100k.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
per_server=$(( (connections + servers - 1) / servers ))
if (( per_server + 100 > 20000 )); then
    echo "conns-100k.sh: $per_server connections per server exceed the 20,000-file limit; use --servers $(( (connections + 18999) / 19000 ))" >&2
    exit 2
fi
command -v redis-server >/dev/null || { echo "conns-100k.sh: redis-server is not installed (apt-get install redis-server)" >&2; exit 1; }

log() { printf '[conns-100k %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
out="$root/bench/results/conns-100k-$stamp"
mkdir -p "$out"
target_dir="${CARGO_TARGET_DIR:-$root/target}"

log "building chat-server and chat-bench (release)"
cargo build --release -p chat-server -p chat-bench >"$out/build.log" 2>&1 \
    || { log "the build failed; see $out/build.log"; exit 1; }

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${pids[@]}"; do
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    pids=()
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_port() {
    local port="$1" pid="$2"
    for _ in $(seq 300); do
        kill -0 "$pid" 2>/dev/null || return 1
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

redis_port="$(free_port)"
taskset -c 0 redis-server --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no \
    --maxclients 10000 >"$out/redis.log" 2>&1 &
redis_pid=$!
pids+=("$redis_pid")
wait_port "$redis_port" "$redis_pid" || { log "redis-server did not start; see $out/redis.log"; exit 1; }
log "redis-server on 127.0.0.1:$redis_port (pid $redis_pid)"

urls=()
server_pids=()
for ((i = 1; i <= servers; i++)); do
    port="$(free_port)"
    (ulimit -n 20000 && exec taskset -c 0 "$target_dir/release/chat-server" --addr "127.0.0.1:$port" \
        --redis "redis://127.0.0.1:$redis_port" --redis-prefix "c100k$stamp" --rate-limit 0) \
        >"$out/server-$i.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    wait_port "$port" "$pid" || { log "chat-server $i did not start; see $out/server-$i.log"; exit 1; }
    urls+=("ws://127.0.0.1:$port")
    server_pids+=("$pid")
    log "chat-server $i on 127.0.0.1:$port (pid $pid)"
done

{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "cpus: $(nproc), memory: $(free -g | awk '/^Mem:/ {print $2}') GiB, kernel $(uname -r)"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "connections: $connections over $servers chat-server processes ($per_server each), rooms of $room_size"
    echo "redis: $(redis-server --version)"
    echo "pinning: redis-server and chat-servers on CPU 0, chat-bench on CPU 1"
} >"$out/machine.txt"
cat "$out/machine.txt" >&2

extra_urls="$(IFS=,; echo "${urls[*]:1}")"
extra_pids="$(IFS=,; echo "${server_pids[*]:1}")"
args=(conns --url "${urls[0]}" --server-pid "${server_pids[0]}"
    --connections "$connections" --room-size "$room_size" --per-worker 10000
    --sources "$sources" --hold "$hold" --probe-timeout 120 --setup-timeout 60)
[[ -n "$extra_urls" ]] && args+=(--extra-url "$extra_urls" --extra-server-pid "$extra_pids")
echo "chat-bench ${args[*]}" >"$out/command.txt"
log "chat-bench ${args[*]}"
ulimit -n 20000 2>/dev/null || true
status=0
timeout 1800 taskset -c 1 "$target_dir/release/chat-bench" "${args[@]}" --json >"$out/report.json" \
    2> >(tee "$out/chat-bench.err" >&2) || status=$?
redis_rss_kib="$(awk '/^VmRSS/ {print $2}' "/proc/$redis_pid/status" 2>/dev/null)"
echo "redis-server RSS at the end: ${redis_rss_kib:-?} KiB" >>"$out/machine.txt"
if [[ $status == 0 ]]; then
    python3 - "$out/report.json" "$redis_rss_kib" <<'PY' | tee "$out/report.txt"
import json, sys
r = json.load(open(sys.argv[1]))
redis = sys.argv[2]
lat = r["probe_latency"]
per = r.get("server_rss_per_conn_bytes")
print(f"opened {r['opened']} of {r['connections']} ({r['failed']} failed) in {r['open_s']:.1f} s: {r['open_rate']:.0f} connections/s")
if per is not None:
    print(f"chat-server RSS: {r['server_rss_before_bytes']/2**20:.1f} MiB -> {r['server_rss_after_bytes']/2**20:.1f} MiB over all servers: {per/1024:.2f} KiB per connection")
if redis:
    print(f"redis-server RSS at the end: {int(redis)/1024:.1f} MiB")
print(f"probe: {r['probe_received']} received, {r['probe_missing']} missing ({r['probe_closed']} closed by the server or failed)")
if r.get("probe_first_close"):
    print(f"first close from a server: {r['probe_first_close']}")
print(f"probe latency: p50 {lat['p50_us']/1000:.1f} ms, p90 {lat['p90_us']/1000:.1f} ms, p99 {lat['p99_us']/1000:.1f} ms, max {lat['max_us']/1000:.1f} ms")
PY
else
    log "chat-bench failed (status $status); see $out/chat-bench.err"
fi
log "results in $out"
exit "$status"
