#!/usr/bin/env bash
# bench/compare.sh: our chat-server against the servers people would pick
# instead, measured side by side by the same load generator (chat-bench).
#
#   bench/compare.sh            full comparison (3 runs per workload; ~15-25 min)
#   bench/compare.sh --quick    a fast sanity run (1 run, small counts; ~3 min)
#
# Options:
#   --runs N            runs per workload (median reported; default 3, quick 1)
#   --servers LIST      comma-separated subset of:
#                       chat-server,uwebsockets-js,node-ws,python-websockets,django-channels
#                       (also chat-server-db: ours with --db, a fresh SQLite file per run)
#   --workloads LIST    comma-separated subset of:
#                       pipelined-1x1000,pipelined-100x10,shared-100x10,paced-100x10,conns
#   --no-install        do not run bench/peers/install.sh
#   --no-pin            do not pin processes to cores
#   --interleave        run 1 of a workload against every server, then run 2,
#                       ... (default: all of one server's runs, then the next
#                       server's); on a shared machine whose load drifts,
#                       interleaving shifts every server's figures alike
#   CHAT_SERVER_BIN=PATH   (environment) run this chat-server binary instead of
#                       the one built from this checkout
#
# What it does: builds chat-bench and chat-server in release mode (the
# normal workspace target dir), installs the peers (bench/peers/install.sh),
# then for each server, workload and run starts the server fresh on a free
# loopback port, pinned to CPU 0, runs chat-bench pinned to CPU 1, and stops
# the server by its PID. Reports go to
# bench/results/<UTC stamp>/<server>/<workload>-<run>.json, the final table
# to bench/results/<stamp>/table.md and stdout. A server that cannot be
# built, installed or started is reported in the table, not fatal.
#
# Every run is bounded: chat-bench's own limits (--max-time, timeouts) and
# a `timeout` around each command. All traffic is on 127.0.0.0/8.
set -u -o pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

quick=0
runs=""
# Every workload, all run by default; every server (all but chat-server-db by default).
all_workloads="pipelined-1x1000,pipelined-100x10,shared-100x10,paced-100x10,conns"
all_servers="chat-server,chat-server-db,uwebsockets-js,node-ws,python-websockets,django-channels"
servers="${all_servers/chat-server-db,/}"
workloads="$all_workloads"
install=1
pin=1
interleave=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --quick) quick=1 ;;
        --runs) runs="$2"; shift ;;
        --servers) servers="$2"; shift ;;
        --workloads) workloads="$2"; shift ;;
        --no-install) install=0 ;;
        --no-pin) pin=0 ;;
        --interleave) interleave=1 ;;
        -h|--help) sed -n '2,/^[^#]/{/^#/p}' "$0"; exit 0 ;;
        *) echo "compare.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
[[ -z "$runs" ]] && { if [[ $quick == 1 ]]; then runs=1; else runs=3; fi; }
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || { echo "compare.sh: --runs wants a positive number, not '$runs'" >&2; exit 2; }

# check_names WHAT LIST KNOWN: every name in the comma-separated LIST is one of KNOWN.
check_names() {
    local what="$1" list="$2" known="$3" name
    local -a names
    IFS=',' read -r -a names <<<"$list"
    for name in "${names[@]}"; do
        if [[ ",$known," != *",$name,"* ]]; then
            echo "compare.sh: unknown $what '$name'; one of: ${known//,/, }" >&2
            exit 2
        fi
    done
}
check_names server "$servers" "$all_servers"
check_names workload "$workloads" "$all_workloads"

log() { printf '[compare %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

stamp="$(date -u +%Y%m%dT%H%M%SZ)"
out="$root/bench/results/$stamp"
mkdir -p "$out"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
bench="$target_dir/release/chat-bench"
# CHAT_SERVER_BIN=PATH measures another build of ours (e.g. a copy of main's
# binary, for a before/after pair in the same quiet minutes).
ours="${CHAT_SERVER_BIN:-$target_dir/release/chat-server}"

# --- Build -------------------------------------------------------------------
# One cargo invocation for both: built apart, cargo unifies the shared
# dependencies' features differently and builds everything twice.
ours_wanted=0
[[ ",$servers," == *",chat-server,"* || ",$servers," == *",chat-server-db,"* ]] && ours_wanted=1
packages=(-p chat-bench)
((ours_wanted)) && packages+=(-p chat-server)
log "building ${packages[*]} (release)"
if ! cargo build --release "${packages[@]}" >"$out/build.log" 2>&1; then
    if ((ours_wanted)) && cargo build --release -p chat-bench >>"$out/build.log" 2>&1; then
        log "chat-server does not build; it is left out (see $out/build.log)"
        for name in chat-server chat-server-db; do
            mkdir -p "$out/$name"
            echo "cargo build --release -p chat-server failed (see build.log)" >"$out/$name/FAILED"
        done
    else
        log "chat-bench does not build; see $out/build.log"
        exit 1
    fi
fi
if [[ $install == 1 ]]; then
    log "installing the peers (bench/peers/install.sh)"
    bench/peers/install.sh >"$out/install.log" 2>&1 || log "some peers failed to install; see $out/install.log"
fi

# --- Machine -----------------------------------------------------------------
ncpu="$(nproc)"
if [[ $pin == 1 && $ncpu -ge 2 ]] && command -v taskset >/dev/null; then
    server_pin=(taskset -c 0)
    bench_pin=(taskset -c 1)
    pinning="server on CPU 0, chat-bench on CPU 1 (taskset)"
else
    server_pin=()
    bench_pin=()
    pinning="none"
fi
# A user serving 19,000 connections raises the soft limit to the hard one.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "cpus: $ncpu ($(lscpu | sed -n 's/^Model name: *//p' | head -n1))"
    echo "memory: $(free -g | awk '/^Mem:/ {print $2}') GiB"
    echo "kernel: $(uname -r)"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "pinning: $pinning"
    echo "open files limit: $(ulimit -n)"
    echo "rustc: $(rustc --version)"
    echo "node: $(node --version 2>/dev/null || echo none)"
    echo "python: $(bench/peers/.venv/bin/python --version 2>/dev/null || echo none)"
    echo "peers: ws $(sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' bench/peers/node/node_modules/ws/package.json 2>/dev/null | head -n1)," \
        "uWebSockets.js $(sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' bench/peers/uws/node_modules/uWebSockets.js/package.json 2>/dev/null | head -n1)," \
        "$(bench/peers/.venv/bin/python -m pip freeze 2>/dev/null | grep -iE '^(websockets|django|channels|daphne)==' | tr '\n' ' ')"
    echo "runs per workload: $runs$( [[ $quick == 1 ]] && echo ' (quick)')"
} >"$out/machine.txt"
cat "$out/machine.txt" >&2

# --- Servers -----------------------------------------------------------------
server_pid=""

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The command that starts server $1 on port $2, as a user would start it.
server_command() {
    local name="$1" port="$2"
    case "$name" in
        # The per-connection rate limit (default 50 msg/s) would refuse a
        # benchmark's senders; it is the only flag the comparison sets.
        chat-server) echo "$ours --addr 127.0.0.1:$port --rate-limit 0" ;;
        chat-server-db) echo "$ours --addr 127.0.0.1:$port --rate-limit 0 --db $out/chat-server-db/chat-$port.db" ;;
        node-ws) echo "node $root/bench/peers/node/server.js $port" ;;
        uwebsockets-js) echo "node $root/bench/peers/uws/server.js $port" ;;
        python-websockets) echo "$root/bench/peers/.venv/bin/python $root/bench/peers/python/server.py $port" ;;
        django-channels)
            echo "$root/bench/peers/.venv/bin/daphne -v 0 -b 127.0.0.1 -p $port benchsite.asgi:application"
            ;;
    esac
}

# Is server $1 installed? Prints the reason when not.
server_missing() {
    case "$1" in
        chat-server) [[ -x "$ours" ]] || echo "no $ours (build failed?)" ;;
        chat-server-db) [[ -x "$ours" ]] && "$ours" --help 2>/dev/null | grep -q -- '--db ' \
            || echo "no $ours with --db (build failed, or the SQLite store has not landed)" ;;
        node-ws) [[ -d bench/peers/node/node_modules/ws ]] || echo "ws is not installed (bench/peers/install.sh)" ;;
        uwebsockets-js) [[ -d bench/peers/uws/node_modules/uWebSockets.js ]] \
            || echo "uWebSockets.js is not installed (bench/peers/install.sh)" ;;
        python-websockets) bench/peers/.venv/bin/python -c 'import websockets' 2>/dev/null \
            || echo "websockets is not installed (bench/peers/install.sh)" ;;
        django-channels) [[ -x bench/peers/.venv/bin/daphne ]] \
            || echo "daphne/channels are not installed (bench/peers/install.sh)" ;;
    esac
}

# start_server NAME LOG: starts it on a free port; sets server_pid and port.
start_server() {
    local name="$1" logfile="$2"
    port="$(free_port)"
    local cmd
    cmd="$(server_command "$name" "$port")"
    echo "$cmd" >"$out/$name/command.txt"
    # `exec` so that the PID we hold is the server's own.
    if [[ $name == django-channels ]]; then
        (cd bench/peers/django && exec "${server_pin[@]}" $cmd) >"$logfile" 2>&1 &
    else
        (exec "${server_pin[@]}" $cmd) >"$logfile" 2>&1 &
    fi
    server_pid=$!
    local deadline=$((SECONDS + 30))
    while ((SECONDS < deadline)); do
        if ! kill -0 "$server_pid" 2>/dev/null; then
            server_pid=""
            return 1
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.2
    done
    stop_server
    return 1
}

stop_server() {
    [[ -z "$server_pid" ]] && return 0
    kill -TERM "$server_pid" 2>/dev/null
    local deadline=$((SECONDS + 10))
    while kill -0 "$server_pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null
    wait "$server_pid" 2>/dev/null
    server_pid=""
}
trap 'stop_server' EXIT
trap 'stop_server; exit 130' INT TERM

# --- Workloads -----------------------------------------------------------------
# Arguments of workload $1 for server $2. Message counts are sized per
# server so that a run takes seconds to a minute: Python websockets is
# several times slower than Node or ours, Django Channels some hundred times
# (~4,000 deliveries/s), so their counts are lower. Every figure is a rate
# or a per-delivery cost, so the counts do not bias the comparison; Django
# also gets a longer drain (its queues take seconds to empty).
workload_args() {
    local workload="$1" name="$2"
    local class=fast
    [[ $name == python-websockets ]] && class=python
    [[ $name == django-channels ]] && class=django
    local n extra=""
    [[ $class == django ]] && extra="--drain 20"
    case "$workload" in
        pipelined-1x1000)
            # Pipelined: each of 4 senders keeps 16 messages in flight.
            case "$class" in fast) n=20000 ;; python) n=4000 ;; django) n=200 ;; esac
            ((quick)) && n=$((n / 10))
            echo "fanout --rooms 1 --members 1000 --senders 4 --window 16 --messages $n --max-time 60 $extra"
            ;;
        pipelined-100x10)
            # Pipelined: each of 100 senders keeps 8 in flight (800 in all).
            case "$class" in fast) n=200000 ;; python) n=50000 ;; django) n=20000 ;; esac
            ((quick)) && n=$((n / 10))
            echo "fanout --rooms 100 --members 10 --senders 100 --window 8 --messages $n --max-time 60 $extra"
            ;;
        shared-100x10)
            # About one message in flight per sender: a window of 100
            # shared by the 100 senders, as in rooms of people typing.
            case "$class" in fast) n=100000 ;; python) n=30000 ;; django) n=5000 ;; esac
            ((quick)) && n=$((n / 10))
            echo "fanout --rooms 100 --members 10 --senders 100 --window 100 --shared-window --messages $n --max-time 60 $extra"
            ;;
        paced-100x10)
            # Paced: 10,000 msg/s in all (100,000 deliveries/s), latency.
            case "$class" in fast) n=100000 ;; python) n=50000 ;; django) n=5000 ;; esac
            ((quick)) && n=$((n / 5))
            echo "fanout --rooms 100 --members 10 --senders 100 --rate 10000 --window 64 --messages $n --max-time 60 $extra"
            ;;
        conns)
            # Daphne does not hold 19,000: it resets a third of the handshakes,
            # opens ~30/s and stops delivering (measured; see BENCHMARKS.md),
            # which takes many minutes per run, so it gets 5,000.
            local c=19000 hold=5
            [[ $class == django ]] && c=5000
            ((quick)) && c=2000 && hold=1
            echo "conns --connections $c --room-size 100 --per-worker 10000 --sources 4 --hold $hold --probe-timeout 60"
            ;;
    esac
}

IFS=',' read -r -a server_list <<<"$servers"
IFS=',' read -r -a workload_list <<<"$workloads"

# The servers that can run; one that cannot is reported in the table.
ready=()
for name in "${server_list[@]}"; do
    mkdir -p "$out/$name"
    [[ -f "$out/$name/FAILED" ]] && continue
    missing="$(server_missing "$name")"
    if [[ -n "$missing" ]]; then
        log "$name: not measured: $missing"
        echo "$missing" >"$out/$name/FAILED"
        continue
    fi
    ready+=("$name")
    for workload in "${workload_list[@]}"; do
        echo "chat-bench $(workload_args "$workload" "$name") --url ws://127.0.0.1:PORT --server-pid PID --json" \
            >"$out/$name/$workload-command.txt"
    done
done

# measure NAME WORKLOAD RUN: one run of WORKLOAD against a fresh server
# (memory figures start from a clean process, and one run's leftovers
# cannot slow the next).
measure() {
    local name="$1" workload="$2" i="$3"
    local args report
    args="$(workload_args "$workload" "$name")"
    if ! start_server "$name" "$out/$name/$workload-$i-server.log"; then
        log "$name: did not start (see $out/$name/$workload-$i-server.log)"
        echo "did not start for $workload run $i (see $workload-$i-server.log)" >>"$out/$name/FAILED"
        return
    fi
    log "$name: $workload run $i/$runs (pid $server_pid, port $port, load $(cut -d' ' -f1 /proc/loadavg))"
    echo "$name $workload run $i: load average $(cut -d' ' -f1-3 /proc/loadavg) at start" >>"$out/load.txt"
    report="$out/$name/$workload-$i.json"
    # shellcheck disable=SC2086
    if ! timeout 600 "${bench_pin[@]}" "$bench" $args --url "ws://127.0.0.1:$port" \
        --server-pid "$server_pid" --json >"$report" 2>"$out/$name/$workload-$i.err"; then
        log "$name: $workload run $i failed: $(tail -n1 "$out/$name/$workload-$i.err")"
        echo "$workload run $i failed: $(tail -n1 "$out/$name/$workload-$i.err")" >>"$out/$name/FAILED"
        rm -f "$report"
    fi
    if ! kill -0 "$server_pid" 2>/dev/null; then
        log "$name: the server died during $workload run $i"
        echo "died during $workload run $i (see $workload-$i-server.log)" >>"$out/$name/FAILED"
        server_pid=""
    fi
    stop_server
}

if ((interleave)); then
    # Round-robin: run i of a workload against every server before run
    # i + 1, so that a machine getting busier or quieter mid-comparison
    # shifts every server's runs alike.
    for ((i = 1; i <= runs; i++)); do
        for workload in "${workload_list[@]}"; do
            for name in "${ready[@]}"; do
                measure "$name" "$workload" "$i"
            done
        done
    done
else
    for name in "${ready[@]}"; do
        for workload in "${workload_list[@]}"; do
            for ((i = 1; i <= runs; i++)); do
                measure "$name" "$workload" "$i"
            done
        done
    done
fi

# --- Table and charts ----------------------------------------------------------------
"$bench" table "$out" --servers "$servers" >"$out/table.md"
"$bench" chart "$out" --servers "$servers" --out "$out/charts" >&2 || log "charts failed"
{
    echo
    echo "## Comparison ($stamp)"
    echo
    cat "$out/table.md"
    echo
    sed 's/^/    /' "$out/machine.txt"
} >&1
log "reports in $out"
