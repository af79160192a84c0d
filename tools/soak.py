#!/usr/bin/env python3
"""tools/soak.py -- `make soak`: ten minutes of mixed load on `qkv serve`, the server's RSS
sampled, printed as a table (not run in CI; the hostile-client suite is
tests/py/test_server_hostile.py).

    tools/soak.py [--bin build/qkv] [--model DIR] [--minutes 10] [--every 30] [--clients 6]

The load, from several loopback addresses at once: the page's requests (short /api/attend with
every map, /api/compare, /api/ablate, /api/lens, /api/generate streams read to the end), long
attend requests, clients that abandon large requests or generations half way, clients that
never read a large answer, drip feeders, and a probe timing GET /api/model. Every `--every`
seconds one row: RSS, the requests answered / refused (503) / failed in the window, the probe's
p50 and max, and the server's counters (GET /api/stats). At the end: RSS at the start, the
maximum, at the end after the load stops, and whether anything failed. Exit status 1 when a
request failed in a way it should not (not 200/503, or a probe over 1 s), or the server died.
"""
import argparse
import http.client
import json
import os
import random
import select
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORDS = ("the bank of the river was steep and the keys to the cabinet were lost while we "
         "walked along the water and sat down near a boat that the old man had left").split()


class Soak:
    def __init__(self, args):
        self.args = args
        cmd = [args.bin, "serve", "--port", "0"] + (["--model", args.model] if args.model else [])
        self.p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = b""
        deadline = time.time() + 120
        while b"\n" not in line:
            r, _, _ = select.select([self.p.stdout], [], [], max(0.0, deadline - time.time()))
            if not r:
                self.p.kill()
                sys.exit("soak: the server did not start")
            chunk = os.read(self.p.stdout.fileno(), 4096)
            if not chunk:
                sys.exit("soak: the server exited: %s" % self.p.stderr.read().decode(errors="replace"))
            line += chunk
        self.port = int(line.decode().split("http://127.0.0.1:")[1].split("/")[0])
        print(line.decode().strip(), flush=True)
        self.lock = threading.Lock()
        self.window = {"ok": 0, "busy": 0, "fail": 0}
        self.totals = {"ok": 0, "busy": 0, "fail": 0}
        self.fail_examples = []
        self.probe = []
        self.stop = threading.Event()
        self.model = self.get("/api/model")
        self.ctx = self.model["n_ctx"]

    # ---- helpers ----------------------------------------------------------------------------

    def conn(self, src="127.0.0.1", timeout=120):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout,
                                          source_address=(src, 0))

    def get(self, path):
        c = self.conn()
        c.request("GET", path)
        r = c.getresponse()
        data = r.read()
        c.close()
        return json.loads(data)

    def count(self, status, what):
        k = "ok" if status == 200 else "busy" if status == 503 else "fail"
        with self.lock:
            self.window[k] += 1
            self.totals[k] += 1
            if k == "fail" and len(self.fail_examples) < 10:
                self.fail_examples.append("%s: %s" % (what, status))

    def post(self, path, body, src):
        try:
            c = self.conn(src)
            c.request("POST", path, body=json.dumps(body).encode(),
                      headers={"Content-Type": "application/json"})
            r = c.getresponse()
            r.read()
            c.close()
            self.count(r.status, path)
        except (OSError, http.client.HTTPException) as e:
            self.count(repr(e), path)

    def text(self, n_words):
        return " ".join(random.choice(WORDS) for _ in range(n_words))

    def raw(self, src, data):
        s = socket.socket()
        s.settimeout(10)
        s.bind((src, 0))
        s.connect(("127.0.0.1", self.port))
        s.sendall(data)
        return s

    def raw_post(self, path, body):
        b = json.dumps(body).encode()
        return (b"POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % (path.encode(), len(b))) + b

    # ---- the load ---------------------------------------------------------------------------

    def page_user(self, i):
        src = "127.0.0.%d" % (10 + i)
        while not self.stop.is_set():
            kind = random.random()
            if kind < 0.4:
                self.post("/api/attend", {"text": self.text(random.randint(3, 20)), "scores": True}, src)
            elif kind < 0.5:
                self.post("/api/attend", {"text": self.text(self.ctx // 2), "top_k": 5}, src)
            elif kind < 0.6:
                self.post("/api/compare", {"a": "I sat on the bank of the river.",
                                           "b": "I put money in the bank.", "word": "bank"}, src)
            elif kind < 0.7:
                self.post("/api/ablate", {"text": self.text(8)}, src)
            elif kind < 0.8:
                self.post("/api/lens", {"text": self.text(10), "positions": "last"}, src)
            else:
                self.post("/api/generate", {"prompt": self.text(5), "max_tokens": 16}, src)
            self.stop.wait(random.uniform(0, 0.2))

    def abuser(self):
        src = "127.0.0.2"
        big = {"text": self.text(self.ctx), "top_k": 0}
        while not self.stop.is_set():
            kind = random.random()
            try:
                if kind < 0.4:  # abandon a large request or a generation half way
                    path = "/api/attend" if kind < 0.25 else "/api/generate"
                    body = big if path == "/api/attend" else {"prompt": self.text(5), "max_tokens": 64}
                    s = self.raw(src, self.raw_post(path, body))
                    time.sleep(random.uniform(0, 0.3))
                    s.close()
                elif kind < 0.7:  # never read a large answer, leave after a while
                    s = socket.socket()
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                    s.bind((src, 0))
                    s.connect(("127.0.0.1", self.port))
                    s.sendall(self.raw_post("/api/attend", big))
                    self.stop.wait(random.uniform(1, 4))
                    s.close()
                else:  # drip headers until the server cuts us off
                    s = self.raw("127.0.0.3", b"GET /api/model HTTP/1.1\r\n")
                    t0 = time.time()
                    while not self.stop.is_set() and time.time() - t0 < 15:
                        try:
                            s.send(b"X")
                        except OSError:
                            break
                        time.sleep(0.5)
                    s.close()
            except OSError:
                pass
            self.stop.wait(0.1)

    def prober(self):
        while not self.stop.is_set():
            t0 = time.time()
            try:
                c = self.conn(timeout=10)
                c.request("GET", "/api/model")
                r = c.getresponse()
                r.read()
                c.close()
                ok = r.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
            dt = time.time() - t0
            with self.lock:
                self.probe.append(dt)
                if not ok or dt > 1.0:
                    self.totals["fail"] += 1
                    self.window["fail"] += 1
                    if len(self.fail_examples) < 10:
                        self.fail_examples.append("probe: %s in %.2f s" % ("ok" if ok else "failed", dt))
            self.stop.wait(0.2)

    def rss_mb(self):
        with open("/proc/%d/status" % self.p.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def run(self):
        a = self.args
        time.sleep(1)
        rss0 = self.rss_mb()
        threads = [threading.Thread(target=self.page_user, args=(i,), daemon=True) for i in range(a.clients)]
        threads += [threading.Thread(target=self.abuser, daemon=True) for _ in range(2)]
        threads += [threading.Thread(target=self.prober, daemon=True)]
        for t in threads:
            t.start()
        hdr = "%7s %8s %6s %5s %5s %9s %9s %7s %7s %7s %7s" % (
            "time s", "RSS MB", "ok", "503", "fail", "probe p50", "probe max", "cancelq", "cancelr",
            "abandon", "cut")
        print(hdr)
        print("-" * len(hdr), flush=True)
        t0 = time.time()
        rss_max = rss0
        end = t0 + a.minutes * 60
        while time.time() < end and self.p.poll() is None:
            time.sleep(min(a.every, max(0.0, end - time.time())))
            if self.p.poll() is not None:
                break
            rss = self.rss_mb()
            rss_max = max(rss_max, rss)
            with self.lock:
                w, self.window = self.window, {"ok": 0, "busy": 0, "fail": 0}
                pr, self.probe = sorted(self.probe), []
            try:
                st = self.get("/api/stats")["requests"]
            except (OSError, ValueError):
                st = {}
            p50 = pr[len(pr) // 2] * 1e3 if pr else float("nan")
            pmax = pr[-1] * 1e3 if pr else float("nan")
            print("%7.0f %8.1f %6d %5d %5d %7.1fms %7.1fms %7s %7s %7s %7s" % (
                time.time() - t0, rss, w["ok"], w["busy"], w["fail"], p50, pmax,
                st.get("cancelled_queued", "?"), st.get("cancelled_running", "?"),
                st.get("abandoned_computed", "?"), st.get("deadline_closed", "?")), flush=True)
        self.stop.set()
        for t in threads:
            t.join(60)
        alive = self.p.poll() is None
        rss_end = float("nan")
        if alive:
            time.sleep(3)  # idle: connections closed, heap trimmed
            rss_end = self.rss_mb()
            self.p.terminate()
            rc = self.p.wait(60)
        else:
            rc = self.p.returncode
        err = self.p.stderr.read().decode(errors="replace")
        print("\nRSS: %.1f MB at the start, %.1f MB at most, %.1f MB at the end (idle)"
              % (rss0, rss_max, rss_end))
        print("requests: %d answered, %d refused with 503, %d failed" % (
            self.totals["ok"], self.totals["busy"], self.totals["fail"]))
        for e in self.fail_examples:
            print("  failed:", e)
        print("server: %s, exit status %d" % ("stopped on SIGTERM" if alive else "DIED", rc))
        if err.strip():
            print(err[-2000:])
        return 0 if alive and rc == 0 and self.totals["fail"] == 0 else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "qkv"))
    ap.add_argument("--model", default=None, help="model folder (default: the built-in model)")
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--every", type=float, default=30, help="seconds between rows")
    ap.add_argument("--clients", type=int, default=6, help="page users")
    args = ap.parse_args()
    random.seed(1)
    sys.exit(Soak(args).run())


if __name__ == "__main__":
    main()
