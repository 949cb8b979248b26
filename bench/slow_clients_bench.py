#!/usr/bin/env python3
"""Slow and idle clients against `tracer serve` (issue 11: idle or slow clients cannot starve
others).

Two phases, each `--seconds` long, while a probe client sends GET /healthz and POST /v1/route
every 50 ms on its own keep-alive connection and records each answer's latency:
  slow:  `--slow` clients each send a request head one byte per second (a slowloris). The server
         cuts each at --request-timeout; the client then reconnects, so that many are always
         there. Reports when they were cut (seconds after their first byte).
  idle:  `--idle` keep-alive clients each send GET /healthz, wait 4 s after the answer, and
         send the next on the same connection. Reports how many requests failed.
Budget (issue 11): probe p99 <= 50 ms in both phases; slow clients cut at the deadline; no idle
request fails. Prints a table; writes JSON (default bench/results/slow_clients_bench.json).

  python3 bench/slow_clients_bench.py --policy DIR [--tracer build/tracer] [--seconds 30]
Needs only the Python standard library. Raises its own open-file limit to the hard limit.
"""
import argparse
import http.client
import json
import os
import re
import resource
import selectors
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXT = "my card has not arrived yet"


def percentile(values, q):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))]


def start_server(args):
    cmd = [args.tracer, "serve", args.policy, "--port", "0", "--threads", str(args.threads),
           "--request-timeout", str(args.request_timeout), "--max-connections", "20000"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in proc.stdout:
        m = re.match(r"listening on http://127\.0\.0\.1:(\d+)", line)
        if m:
            return proc, int(m.group(1))
    raise SystemExit("slow_clients_bench: the server did not start: " + " ".join(cmd))


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class Probe(threading.Thread):
    """GET /healthz and POST /v1/route every 50 ms; latencies in ms, failures counted."""

    def __init__(self, port, stop):
        super().__init__(daemon=True)
        self.port, self.stop = port, stop
        self.latency_ms, self.failures = [], 0

    def run(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        body = json.dumps({"text": TEXT})
        while not self.stop.is_set():
            for method, path, data in (("GET", "/healthz", None), ("POST", "/v1/route", body)):
                t0 = time.perf_counter()
                try:
                    conn.request(method, path, body=data,
                                 headers={"Content-Type": "application/json"})
                    r = conn.getresponse()
                    r.read()
                    ok = r.status == 200
                except (OSError, http.client.HTTPException):
                    ok = False
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                if ok:
                    self.latency_ms.append((time.perf_counter() - t0) * 1000)
                else:
                    self.failures += 1
            time.sleep(0.05)


def slow_phase(port, clients, seconds):
    """Keeps `clients` slowloris connections for `seconds`; returns the cut times."""
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 4096
    sel = selectors.DefaultSelector()
    conns = {}  # socket -> [bytes sent, first byte time]

    def connect():
        s = socket.create_connection(("127.0.0.1", port))
        s.setblocking(False)
        conns[s] = [0, None]
        sel.register(s, selectors.EVENT_READ)

    for _ in range(clients):
        connect()
    cut_after, answered, end = [], 0, time.monotonic() + seconds
    next_tick = time.monotonic()
    while time.monotonic() < end:
        timeout = max(0.0, next_tick - time.monotonic())
        for key, _ in sel.select(timeout):
            s = key.fileobj
            try:
                data = s.recv(65536)
            except OSError:
                data = b""
            if data:
                answered += data.startswith(b"HTTP/1.1 408")
                continue
            sent, first = conns.pop(s)
            sel.unregister(s)
            s.close()
            if first is not None:
                cut_after.append(time.monotonic() - first)
            connect()
        if time.monotonic() >= next_tick:  # one more byte from every client, once a second
            next_tick += 1.0
            for s, state in list(conns.items()):
                try:
                    s.send(head[state[0]:state[0] + 1])
                    if state[1] is None:
                        state[1] = time.monotonic()
                    state[0] += 1
                except OSError:
                    pass
    for s in conns:
        s.close()
    return cut_after, answered


def idle_phase(port, clients, seconds, pause=4.0):
    """`clients` keep-alive connections, each a request every `pause` s after its answer."""
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    sel = selectors.DefaultSelector()
    state = {}  # socket -> [buffer, when to send next (None: waiting for an answer), sent at]
    ok = failed = 0
    why = {"send_failed": 0, "no_answer_10s": 0, "closed_while_waiting": 0, "not_200": 0,
           "closed_while_idle": 0}
    for _ in range(clients):
        s = socket.create_connection(("127.0.0.1", port))
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        state[s] = [b"", time.monotonic(), 0.0]
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        now = time.monotonic()
        for s, st in list(state.items()):
            if st[1] is not None and now >= st[1]:
                try:
                    s.send(request)
                    st[1], st[2] = None, now
                except OSError:
                    failed += 1
                    why["send_failed"] += 1
                    st[1] = now + pause
            elif st[1] is None and now - st[2] > 10:  # no answer in 10 s
                failed += 1
                why["no_answer_10s"] += 1
                st[1] = now + pause
        for key, _ in sel.select(0.05):
            s = key.fileobj
            st = state[s]
            try:
                data = s.recv(65536)
            except OSError:
                data = b""
            if not data:  # closed by the server: count it, reconnect
                failed += st[1] is None
                why["closed_while_waiting" if st[1] is None else "closed_while_idle"] += 1
                sel.unregister(s)
                s.close()
                del state[s]
                n = socket.create_connection(("127.0.0.1", port))
                n.setblocking(False)
                sel.register(n, selectors.EVENT_READ)
                state[n] = [b"", time.monotonic() + pause, 0.0]
                continue
            st[0] += data
            head_end = st[0].find(b"\r\n\r\n")
            if head_end < 0:
                continue
            m = re.search(rb"Content-Length: (\d+)", st[0][:head_end])
            whole = head_end + 4 + (int(m.group(1)) if m else 0)
            if len(st[0]) < whole:
                continue
            ok += st[0].startswith(b"HTTP/1.1 200")
            failed += not st[0].startswith(b"HTTP/1.1 200")
            why["not_200"] += not st[0].startswith(b"HTTP/1.1 200")
            if not st[0].startswith(b"HTTP/1.1 200") and "first_not_200" not in why:
                why["first_not_200"] = st[0][:300].decode("latin-1")
            st[0] = st[0][whole:]
            st[1] = time.monotonic() + pause
    for s in state:
        s.close()
    return ok, failed, why


def run_phase(name, port, fn):
    stop = threading.Event()
    probe = Probe(port, stop)
    probe.start()
    result = fn()
    stop.set()
    probe.join()
    return result, probe


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--policy", required=True, help="policy folder to serve")
    ap.add_argument("--tracer", default=os.path.join(ROOT, "build", "tracer"))
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--slow", type=int, default=1000, help="slow clients (one byte per second)")
    ap.add_argument("--idle", type=int, default=2000, help="idle keep-alive clients")
    ap.add_argument("--threads", type=int, default=64, help="tracer serve --threads")
    ap.add_argument("--request-timeout", type=float, default=10)
    ap.add_argument("--json-out", default=os.path.join(ROOT, "bench", "results",
                                                       "slow_clients_bench.json"))
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < max(args.slow, args.idle) + 100:
        sys.exit(f"slow_clients_bench: the open-file limit ({hard}) is too low; raise ulimit -n")

    proc, port = start_server(args)
    try:
        (cuts, answered_408), slow_probe = run_phase(
            "slow", port, lambda: slow_phase(port, args.slow, args.seconds))
        rss_slow = rss_mb(proc.pid)
        (idle_ok, idle_failed, idle_why), idle_probe = run_phase(
            "idle", port, lambda: idle_phase(port, args.idle, args.seconds))
        rss_idle = rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    result = {
        "seconds": args.seconds, "server_threads": args.threads,
        "request_timeout_s": args.request_timeout,
        "slow": {"clients": args.slow, "cut": len(cuts), "answered_408": answered_408,
                 "cut_after_s_median": percentile(cuts, 0.5),
                 "cut_after_s_max": max(cuts) if cuts else None,
                 "probe_p50_ms": percentile(slow_probe.latency_ms, 0.5),
                 "probe_p99_ms": percentile(slow_probe.latency_ms, 0.99),
                 "probe_max_ms": max(slow_probe.latency_ms, default=float("nan")),
                 "probes": len(slow_probe.latency_ms), "probe_failures": slow_probe.failures,
                 "server_rss_mb": rss_slow},
        "idle": {"clients": args.idle, "requests_ok": idle_ok, "requests_failed": idle_failed,
                 "failures_by_kind": idle_why,
                 "probe_p50_ms": percentile(idle_probe.latency_ms, 0.5),
                 "probe_p99_ms": percentile(idle_probe.latency_ms, 0.99),
                 "probe_max_ms": max(idle_probe.latency_ms, default=float("nan")),
                 "probes": len(idle_probe.latency_ms), "probe_failures": idle_probe.failures,
                 "server_rss_mb": rss_idle},
    }
    s, i = result["slow"], result["idle"]
    rows = [
        ("slow clients (1 byte/s), held", f"{args.slow}", ""),
        ("  cut by the server", f"{s['cut']}", ""),
        ("  cut after, median / max (s)",
         f"{s['cut_after_s_median']:.1f} / {s['cut_after_s_max'] or float('nan'):.1f}",
         f"~{args.request_timeout:g}"),
        ("  probe p50 / p99 / max (ms)",
         f"{s['probe_p50_ms']:.2f} / {s['probe_p99_ms']:.2f} / {s['probe_max_ms']:.1f}",
         "p99 <= 50"),
        ("  probe failures", f"{s['probe_failures']}", "0"),
        ("idle keep-alive clients (4 s pauses)", f"{args.idle}", ""),
        ("  requests answered / failed", f"{i['requests_ok']} / {i['requests_failed']}", "- / 0"),
        ("  probe p50 / p99 / max (ms)",
         f"{i['probe_p50_ms']:.2f} / {i['probe_p99_ms']:.2f} / {i['probe_max_ms']:.1f}",
         "p99 <= 50"),
        ("  probe failures", f"{i['probe_failures']}", "0"),
        ("  idle connections the server closed", f"{idle_why['closed_while_idle']}", ""),
        ("server RSS after slow / idle (MB)", f"{rss_slow:.1f} / {rss_idle:.1f}", ""),
    ]
    print(f"{'measure':<40}{'value':>24}   budget")
    for name, value, budget in rows:
        print(f"{name:<40}{value:>24}   {budget}")
    os.makedirs(os.path.dirname(args.json_out), exist_ok=True)
    with open(args.json_out, "w") as f:
        json.dump(result, f, indent=2)
    print("wrote", args.json_out)


if __name__ == "__main__":
    main()
