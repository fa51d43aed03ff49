#!/usr/bin/env python3
"""bench/db-pairs.py: chat-server with and without --db, interleaved run by
run, server pinned to CPU 0 and chat-bench to CPU 1 (the method of
BENCHMARKS.md, "The cost of keeping history").

    cargo build --release -p chat-server -p chat-bench
    bench/db-pairs.py --bin now=target/release/chat-server --runs 3
    bench/db-pairs.py --bin now=A --bin before=B --binmodes before=db ...

Per run it prints (and appends to OUT/rows.jsonl) one JSON line: chat-bench's
deliveries/s, server CPU per delivery (--server-pid, timed phase), latency,
losses, the load average at the start, the server threads' CPU over the whole
run by thread name (/proc/PID/task/*/stat: the async workers and
chat-db-writer apart), and with --db the rows stored. A fresh database file
per run under OUT, removed afterwards. Loopback only; every server is
stopped by its PID.
"""
import json, os, socket, subprocess, sys, time, signal, argparse, shutil

p = argparse.ArgumentParser()
p.add_argument("--bin", action="append", required=True, help="label=path/to/chat-server")
p.add_argument("--modes", default="mem,db")
p.add_argument("--workloads", default="1x1000,100x10,paced")
p.add_argument("--runs", type=int, default=2)
p.add_argument("--bench", default="target/release/chat-bench")
p.add_argument("--out", default="bench/results/db-pairs")
p.add_argument("--perf", action="store_true")
p.add_argument("--no-pin", action="store_true",
    help="do not pin: server and chat-bench share both cores, as on a machine nobody tuned")
p.add_argument("--binenv", action="append", default=[])
p.add_argument("--binmodes", action="append", default=[])
p.add_argument("--writer-sched", action="append", default=[],
    help="label=batch|niceN: after start, put the chat-db-writer thread under SCHED_BATCH "
         "(chrt -b) or nice N (renice), to try scheduling the writer apart from the workers")
a = p.parse_args()

WL = {
 "1x1000": "--rooms 1 --members 1000 --senders 4 --window 16 --messages 20000",
 "100x10": "--rooms 100 --members 10 --senders 100 --window 8 --messages 200000",
 "paced": "--rooms 100 --members 10 --senders 100 --rate 10000 --window 64 --messages 100000",
}
TCK = os.sysconf("SC_CLK_TCK")

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close(); return port

def threads(pid):
    out = {}
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            st = open(f"/proc/{pid}/task/{t}/stat").read()
        except OSError:
            continue
        comm = st[st.index("(")+1:st.rindex(")")]
        f = st[st.rindex(")")+2:].split()
        out[t] = (comm, (int(f[11]) + int(f[12])) / TCK)
    return out

def by_name(before, after):
    agg = {}
    for t, (comm, cpu) in after.items():
        c0 = before.get(t, (comm, 0.0))[1]
        agg[comm] = agg.get(comm, 0.0) + cpu - c0
    return agg

os.makedirs(a.out, exist_ok=True)
bins = dict(b.split("=", 1) for b in a.bin)
benv = {}
for e in a.binenv:
    l, kv = e.split("=", 1); k, v = kv.split("=", 1); benv.setdefault(l, {})[k] = v
rows = []
for run in range(a.runs):
    for wl in a.workloads.split(","):
        for label, path in bins.items():
            bm = dict(x.split("=",1) for x in a.binmodes)
            for mode in bm.get(label, a.modes).split(","):
                port = free_port()
                cmd = ([] if a.no_pin else ["taskset", "-c", "0"]) + [path, "--addr", f"127.0.0.1:{port}", "--rate-limit", "0"]
                db = None
                if mode == "db":
                    db = f"{a.out}/chat-{port}.db"
                    cmd += ["--db", db]
                log = open(f"{a.out}/server-{label}-{mode}-{wl}-{run}.log", "w")
                srv = subprocess.Popen(cmd, stdout=log, stderr=log, env={**os.environ, **benv.get(label, {})})
                for _ in range(100):
                    try:
                        socket.create_connection(("127.0.0.1", port), 0.1).close(); break
                    except OSError:
                        time.sleep(0.05)
                sched = dict(x.split("=", 1) for x in a.writer_sched).get(label)
                if sched and mode == "db":
                    for t in os.listdir(f"/proc/{srv.pid}/task"):
                        if open(f"/proc/{srv.pid}/task/{t}/comm").read().strip() == "chat-db-writer":
                            if sched == "batch":
                                subprocess.run(["chrt", "-b", "-p", "0", t], check=True)
                            else:
                                subprocess.run(["renice", "-n", sched.removeprefix("nice"), "-p", t], check=True, stdout=subprocess.DEVNULL)
                load = open("/proc/loadavg").read().split()[:3]
                b0 = threads(srv.pid)
                perf = None
                if a.perf:
                    perf = subprocess.Popen(["perf", "record", "-g", "-F", "2999", "-p", str(srv.pid), "-o", f"{a.out}/perf-{label}-{mode}-{wl}-{run}.data"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                bcmd = ([] if a.no_pin else ["taskset", "-c", "1"]) + [a.bench, "fanout"] + WL[wl].split() + ["--max-time", "60", "--url", f"ws://127.0.0.1:{port}", "--server-pid", str(srv.pid), "--json"]
                r = subprocess.run(bcmd, capture_output=True, text=True, timeout=180)
                b1 = threads(srv.pid)
                if perf:
                    perf.send_signal(signal.SIGINT); perf.wait()
                srv.send_signal(signal.SIGTERM)
                try: srv.wait(30)
                except subprocess.TimeoutExpired: srv.kill(); srv.wait()
                try:
                    rep = json.loads(r.stdout)
                except Exception:
                    print("bench failed", r.stderr[-2000:], file=sys.stderr); continue
                stored = None
                if db:
                    try:
                        stored = int(subprocess.run(["sqlite3", db, "select count(*) from messages"], capture_output=True, text=True).stdout.strip())
                    except Exception: pass
                    for suf in ("", "-wal", "-shm", ".lock"):
                        try: os.remove(db + suf)
                        except OSError: pass
                tc = by_name(b0, b1)
                s = rep.get("server") or {}
                row = dict(run=run, wl=wl, bin=label, mode=mode, load=load,
                    dps=round(rep["deliveries_per_sec"]), cpu_us=round(s.get("cpu_us_per_delivery", 0), 4),
                    cpu_s=round(s.get("cpu_s", 0), 3), waited=round(s.get("waited_cores", 0), 3),
                    lost=rep["lost"], errors=rep["errors"], p50=rep["latency"]["p50_us"], p99=rep["latency"]["p99_us"],
                    distinct=rep["distinct"], threads={k: round(v, 3) for k, v in tc.items()}, stored=stored,
                    lg_sat=rep["loadgen"]["saturated"], lg_cpu=round(rep["loadgen"]["cpu_cores"], 2))
                rows.append(row)
                print(json.dumps(row), flush=True)
                with open(f"{a.out}/rows.jsonl", "a") as f: f.write(json.dumps(row) + "\n")
