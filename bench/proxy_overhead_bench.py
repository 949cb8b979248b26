#!/usr/bin/env python3
"""Deferred-request overhead of the tracer proxy against a Python http.server upstream.

The upstream is the kind users test with: http.server's BaseHTTPRequestHandler (HTTP/1.0, one
connection per request). One client sends the same deferred chat completion N times, first to
the upstream directly, then through `tracer serve --upstream`; the table gives p50/p90/p99 of
both and the difference. Writes bench/results/proxy_overhead_bench.json.

Usage: python3 bench/proxy_overhead_bench.py POLICY_DIR [--requests 2000] [--tracer build/tracer]
"""
import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

ANSWER = json.dumps({"id": "x", "object": "chat.completion", "choices": [
    {"index": 0, "message": {"role": "assistant", "content": "card_arrival"},
     "finish_reason": "stop"}]}).encode()


class Upstream(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(ANSWER)))
        self.end_headers()
        self.wfile.write(ANSWER)

    def log_message(self, *args):
        pass


def latencies(port, body, n):
    """Milliseconds per request, one client, reconnecting whenever the server closes."""
    conn = http.client.HTTPConnection("127.0.0.1", port)
    out, decisions = [], set()
    for _ in range(n):
        t0 = time.perf_counter()
        conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        out.append((time.perf_counter() - t0) * 1000)
        decisions.add(r.getheader("X-Tracer-Decision"))
        if r.version == 10 or (r.getheader("Connection") or "").lower() == "close":
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port)
    out.sort()
    return {q: out[int(len(out) * f)] for q, f in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))}, decisions


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("policy")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--tracer", default="build/tracer")
    a = ap.parse_args()
    upstream = HTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    up_port = upstream.server_address[1]
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen([a.tracer, "serve", a.policy, "--port", "0", "--upstream",
                                 f"http://127.0.0.1:{up_port}", "--trace-db", os.path.join(tmp, "t.db")],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            port = int(proc.stdout.readline().rsplit(":", 1)[1])
            # Text the policy defers (nonsense: out of distribution).
            body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "zzqx plorp vvkw qqq"}]})
            latencies(port, body, 50)  # warm-up
            direct, _ = latencies(up_port, body, a.requests)
            proxied, decisions = latencies(port, body, a.requests)
        finally:
            proc.terminate()
            proc.wait()
    if decisions != {"deferred"}:
        sys.exit(f"expected every request deferred, got {decisions}")
    print(f"{'measure (ms)':<30} {'p50':>8} {'p90':>8} {'p99':>8}")
    for name, row in (("upstream direct", direct), ("through the proxy", proxied),
                      ("overhead", {k: proxied[k] - direct[k] for k in direct})):
        print(f"{name:<30} {row['p50']:>8.3f} {row['p90']:>8.3f} {row['p99']:>8.3f}")
    os.makedirs("bench/results", exist_ok=True)
    with open("bench/results/proxy_overhead_bench.json", "w") as f:
        json.dump({"requests": a.requests, "upstream_direct_ms": direct, "proxy_ms": proxied,
                   "overhead_ms": {k: proxied[k] - direct[k] for k in direct}}, f, indent=1)
    print("wrote bench/results/proxy_overhead_bench.json")


if __name__ == "__main__":
    main()
