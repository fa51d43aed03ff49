#!/usr/bin/env bash
# bench/experiments/uring-fanout/run.sh: one send(2) per delivery against
# io_uring submissions, interleaved, sender on CPU 0 and sink on CPU 1.
#
#   run.sh [ROUNDS] [extra `send` options, e.g. --rate 10000 --seconds 10]
#
# Each round runs every mode once, in turn, each against a fresh sink.
# Prints one line per run; a run whose sink did not receive every byte the
# sender says it sent is reported as LOST.
set -euo pipefail
cd "$(dirname "$0")"
rounds="${1:-3}"; shift || true
cargo build --release --quiet
bin=target/release/uring-fanout
sockets=1000
for round in $(seq 1 "$rounds"); do
    for mode in send uring-room uring-tick; do
        out="$(mktemp)"
        taskset -c 1 "$bin" sink --connections "$sockets" > "$out" &
        sink=$!
        for _ in $(seq 1 100); do grep -q '^port ' "$out" && break; sleep 0.05; done
        port="$(sed -n 's/^port //p' "$out")"
        line="$(taskset -c 0 "$bin" send --port "$port" --sockets "$sockets" --mode "$mode" "$@")"
        wait "$sink"
        received="$(sed -n 's/^received //p' "$out")"
        sent="$(sed -n 's/.*sent_bytes=\([0-9]*\).*/\1/p' <<< "$line")"
        verdict=ok; [[ "$received" == "$sent" ]] || verdict="LOST (sent $sent, received $received)"
        echo "round=$round $line $verdict"
        rm -f "$out"
    done
done
