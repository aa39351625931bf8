#!/usr/bin/env python3
"""Live model refresh benchmark (issue 17), driven by bench/refresh/run.sh.

Against the release `predict` on loopback with MODEL_REFRESH_SECONDS=1 (INTERVAL), for a
local store and, when s3s-fs is installed, for the model in s3s-fs:

1. publish -> first answer from the new version (`x-model-version`), TRIALS times after one
   warm-up. Split per trial into
     wait   = the poll phase: from the publish to the start of the check that sees it,
     load   = load + verify + warm-up + swap: from that check's start to the server's log
              line "model refresh: new version loaded",
     answer = from that log line to the first answer from the new version.
   The check start is exact on S3 (s3s-fs logs the check's GET of `latest`). For the
   local store it is the previous load's log line plus the whole intervals between the two
   loads (the server schedules the next check one interval after a check ends), so `load`
   there also holds the timer's slack (about 1 ms per interval).
   A "publish" is `trainer models promote` of a version written beforehand by `trainer fit`
   (the pointer write is what the server polls; a fit's last step is the same write), at a
   uniformly random point of the poll phase.
2. wrk -t2 -c32 -d DURATION s --latency on POST /predict while a publisher moves `latest`
   every PUBLISH_EVERY s ("swaps"), against the same wrk run while the same publisher
   promotes the version already served ("steady": the same processes and reads, no swap).
   Runs alternate steady, swaps, steady, swaps ... (ROUNDS pairs), so drift on a shared
   machine hits both.
3. (S3 only) requests to the store while nothing changes: WINDOW s with INTERVAL=1, through
   a logging proxy in front of s3s-fs (method, key, If-None-Match, status, bytes), scaled to
   the default 30 s interval; and whether any is a model download.

Prints tables and writes --json. Every process started here is stopped by its id.
"""
import argparse
import http.client
import http.server
import importlib.util
import json
import os
import random
import re
import signal
import socket
import socketserver
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# s3s-fs start-up and its route log: shared with bench/s3 (one place to fix).
_spec = importlib.util.spec_from_file_location("bench_s3", os.path.join(ROOT, "bench", "s3", "bench.py"))
s3b = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(s3b)

LOADED = re.compile(r"^(\S+Z)\s+INFO\s.*model refresh: new version loaded.*\bto=\"?([^\"\s]+)")
TS_ROUTE = re.compile(r'^\s*(\S+Z)\s+DEBUG\s.*resolved route, op: (\w+), s3_path: Object \{ bucket: "([^"]*)", key: "([^"]*)" \}')
BODY = open(os.path.join(ROOT, "bench", "serve", "body.json"), "rb").read()


def ts(s):
    """RFC 3339 UTC with up to 9 fractional digits -> Unix seconds (float)."""
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z$", s)
    base = datetime.strptime(m.group(1) + "+0000", "%Y-%m-%dT%H:%M:%S%z").timestamp()
    return base + (float("0." + m.group(2)) if m.group(2) else 0.0)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Predict:
    """One predict server, its log in a file."""

    def __init__(self, binary, env, model_uri, interval, log_path):
        self.port = free_port()
        self.log_path = log_path
        e = dict(env, MODEL_URI=model_uri, MODEL_REFRESH_SECONDS=str(interval), HOST="127.0.0.1",
                 PORT=str(self.port), RUST_LOG="info", LOG_FORMAT="text", NO_COLOR="1")
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen([binary], env=e, stdout=self.log, stderr=subprocess.STDOUT)
        self.conn = None
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                self.ask()
                return
            except OSError:
                if self.proc.poll() is not None:
                    sys.exit(f"predict exited:\n{open(log_path).read()}")
                time.sleep(0.05)
        self.stop()
        sys.exit("predict did not answer within 30 s")

    def ask(self):
        """POST /predict on a kept-alive connection: (status, x-model-version)."""
        for attempt in (0, 1):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                self.conn.request("POST", "/predict", BODY, {"content-type": "application/json"})
                r = self.conn.getresponse()
                r.read()
                return r.status, r.getheader("x-model-version")
            except (OSError, http.client.HTTPException):
                self.conn = None
                if attempt:
                    raise

    def loads(self):
        """[(unix time, version)] of every "new version loaded" line so far."""
        out = []
        for line in open(self.log_path, errors="replace"):
            m = LOADED.match(line)
            if m:
                out.append((ts(m.group(1)), m.group(2)))
        return out

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


class Store:
    """Where the versions live, and how `latest` is moved."""

    def __init__(self, kind, trainer, work, versions):
        self.kind, self.trainer, self.work = kind, trainer, work
        self.s3 = None
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TRAINER_"))}
        if kind == "s3":
            self.s3_log = os.path.join(work, "s3s-fs.log")
            self.s3, self.hostport = s3b.start_s3s(work, self.s3_log)
            self.env.update(AWS_ENDPOINT_URL=f"http://{self.hostport}", AWS_ACCESS_KEY_ID=s3b.AK,
                            AWS_SECRET_ACCESS_KEY=s3b.SK, AWS_REGION="us-east-1")
            self.root = f"s3://{s3b.BUCKET}/models"
        else:
            self.root = os.path.join(work, "store")
        self.model_uri = f"{self.root}/digits"
        # Distinct versions (one seed each): one alpha, so no cross-validation; seq, so the
        # fits do not fight the other developers' builds for both cores.
        self.versions = []
        for seed in range(versions):
            report = os.path.join(work, f"fit-{seed}.json")
            subprocess.run([trainer, "fit", "--data", os.path.join(ROOT, "data", "digits.csv"),
                            "--store", self.root, "--name", "digits", "--alphas", "1", "--mode", "seq",
                            "--seed", str(seed), "--report", report],
                           env=self.env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            with open(report) as f:
                self.versions.append(json.load(f)["model_uri"].rstrip("/").rsplit("/", 1)[1])
        if len(set(self.versions)) != len(self.versions):
            sys.exit(f"the fits did not give distinct versions: {self.versions}")

    def promote(self, version):
        """Make `latest` name `version`; returns (start, end) wall times of the command."""
        t0 = time.time()
        subprocess.run([self.trainer, "models", "promote", f"{self.model_uri}/{version}"],
                       env=self.env, check=True, stdout=subprocess.DEVNULL)
        return t0, time.time()

    def moved_at(self, t0, t1):
        """When `latest` moved during a promote that ran from t0 to t1."""
        if self.kind == "local":
            # The pointer is renamed into place: its inode's ctime is the rename.
            return os.stat(os.path.join(self.root, "digits", "latest")).st_ctime_ns / 1e9
        puts = [t for t, op, _b, key in self.routes() if op == "PutObject" and key.endswith("digits/latest")
                and t0 - 0.01 <= t <= t1 + 0.01]
        return puts[-1] if puts else t1

    def routes(self):
        out = []
        for line in open(self.s3_log, errors="replace"):
            m = TS_ROUTE.match(line)
            if m:
                out.append((ts(m.group(1)), m.group(2), m.group(3), m.group(4)))
        return out

    def close(self):
        if self.s3 is not None:
            self.s3.send_signal(signal.SIGTERM)
            self.s3.wait()


def summary(xs):
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}


def time_to_new_version(store, pr, interval, trials):
    """Part 1: publish -> first answer from the new version, split into its phases."""
    rows = []
    for i in range(trials + 1):  # trial 0 only gives the first load's time
        version = store.versions[i]
        loads = pr.loads()
        prev_load = loads[-1][0] if loads else time.time()
        # A uniformly random point of the poll phase that follows the previous load.
        target = prev_load + random.uniform(0, interval)
        time.sleep(max(0.0, target - time.time()))
        t0, t1 = store.promote(version)
        moved = store.moved_at(t0, t1)
        deadline = time.time() + interval * 20 + 10
        while True:
            status, served = pr.ask()
            now = time.time()
            if served == version:
                first = now
                break
            if now > deadline:
                sys.exit(f"version {version} not served after {now - t1:.1f} s; log:\n{open(pr.log_path).read()}")
            time.sleep(0.002)
        time.sleep(0.05)  # let the log line reach the file
        new_loads = [t for t, v in pr.loads() if v == version]
        if not new_loads:
            sys.exit(f"no 'new version loaded' line for {version}")
        loaded = new_loads[-1]
        if i == 0:
            continue
        if store.kind == "s3":
            gets = [t for t, op, _b, key in store.routes()
                    if op == "GetObject" and key.endswith("digits/latest") and moved <= t <= loaded]
            check = gets[0] if gets else loaded
        else:
            whole = int((loaded - prev_load) // interval)
            check = prev_load + whole * interval
        rows.append({"version": version, "promote_s": t1 - t0, "total_ms": (first - moved) * 1e3,
                     "wait_ms": (check - moved) * 1e3, "load_ms": (loaded - check) * 1e3,
                     "answer_ms": (first - loaded) * 1e3})
    return rows


def parse_wrk(text):
    def ms(v, unit):
        return float(v) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]
    p = {q: ms(*re.search(rf"^\s+{q}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M).groups()) for q in ("50", "99")}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sock = re.search(r"Socket errors: (.*)", text)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),
            "p50_ms": p["50"], "p99_ms": p["99"], "non_2xx": int(errors.group(1)) if errors else 0,
            "socket_errors": sock.group(1) if sock else ""}


def latency_during_swaps(store, pr, duration, warmup, every, rounds):
    """Part 2: the same wrk run with `latest` moving every `every` s, and with no-op promotes."""
    lua = os.path.join(ROOT, "bench", "serve", "post.lua")
    url = f"http://127.0.0.1:{pr.port}/predict"
    env = dict(os.environ, BODY_FILE=os.path.join(ROOT, "bench", "serve", "body.json"))
    current = pr.ask()[1]
    others = [v for v in store.versions if v != current]
    runs = []
    for r in range(rounds):
        for kind in ("steady", "swaps"):
            subprocess.run(["wrk", "-t2", "-c32", f"-d{warmup}s", "-s", lua, url], env=env, check=True,
                           stdout=subprocess.DEVNULL)
            stop = threading.Event()
            promoted = []

            def publisher():
                nonlocal current
                i = 0
                while not stop.wait(every):
                    if kind == "swaps":
                        nxt = others[i % len(others)]
                        i += 1
                        if nxt == current:
                            nxt = others[i % len(others)]
                            i += 1
                        current = nxt
                    store.promote(current)  # steady: the served version again, latest unmoved
                    promoted.append(current)

            loads_before = len(pr.loads())
            th = threading.Thread(target=publisher)
            wrk = subprocess.Popen(["wrk", "-t2", "-c32", f"-d{duration}s", "--latency", "-s", lua, url],
                                   env=env, stdout=subprocess.PIPE, text=True)
            th.start()
            out, _ = wrk.communicate()
            stop.set()
            th.join()
            time.sleep(interval_s + 0.5)  # let the last publish land before the next run
            res = parse_wrk(out)
            res.update(kind=kind, round=r, publishes=len(promoted), swaps=len(pr.loads()) - loads_before)
            runs.append(res)
            print(f"  {kind:<6} round {r}: {res['rps']:>9,.0f} req/s  p50 {res['p50_ms']:6.2f} ms  "
                  f"p99 {res['p99_ms']:6.2f} ms  non-2xx {res['non_2xx']}  swaps {res['swaps']}", flush=True)
    return runs


class Proxy(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def start_proxy(upstream, records):
    """A logging HTTP proxy on loopback in front of s3s-fs. Headers go through unchanged
    (Host included, so SigV4 signatures still verify)."""
    host, port = upstream.split(":")

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def relay(self):
            n = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(n) if n else None
            c = http.client.HTTPConnection(host, int(port), timeout=30)
            c.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for k, v in self.headers.items():
                c.putheader(k, v)
            c.endheaders(body)
            r = c.getresponse()
            data = r.read()
            records.append({"t": time.time(), "method": self.command, "path": self.path.split("?")[0],
                            "if_none_match": "if-none-match" in {k.lower() for k in self.headers.keys()},
                            "status": r.status, "bytes": len(data)})
            self.send_response_only(r.status)
            for k, v in r.getheaders():
                if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(k, v)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            c.close()

        do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = relay

    srv = Proxy(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def idle_store_requests(store, predict_bin, work, window):
    """Part 3: what an unchanged model costs the store, through the logging proxy."""
    records = []
    proxy = start_proxy(store.hostport, records)
    env = dict(store.env, AWS_ENDPOINT_URL=f"http://127.0.0.1:{proxy.server_address[1]}")
    pr = Predict(predict_bin, env, store.model_uri, 1, os.path.join(work, "predict-idle.log"))
    try:
        time.sleep(1.5)
        n0, s0, t0 = len(records), len(store.routes()), time.time()
        time.sleep(window)
        n1, s1, t1 = len(records), len(store.routes()), time.time()
    finally:
        pr.stop()
        proxy.shutdown()
    seen = records[n0:n1]
    routes = store.routes()[s0:s1]
    span = t1 - t0
    downloads = [r for r in seen if r["method"] == "GET" and r["path"].endswith("/model.json")]
    per_check = len(seen) / max(1, sum(1 for r in seen if r["path"].endswith("/latest")))
    return {
        "window_s": span, "interval_s": 1, "requests": len(seen), "s3s_fs_logged_routes": len(routes),
        "by_kind": sorted({(r["method"], r["path"].split("/", 2)[-1], r["if_none_match"], r["status"], r["bytes"])
                           for r in seen}),
        "requests_per_check": per_check,
        "per_hour_at_1s": len(seen) / span * 3600,
        "per_hour_at_30s": len(seen) / span * 3600 / 30,
        "model_downloads": len(downloads),
        "conditional": all(r["if_none_match"] for r in seen) if seen else None,
        "bytes_per_hour_at_30s": sum(r["bytes"] for r in seen) / span * 3600 / 30,
    }


interval_s = 1


def main():
    global interval_s
    ap = argparse.ArgumentParser()
    ap.add_argument("--predict", required=True)
    ap.add_argument("--trainer", required=True)
    ap.add_argument("--stores", default="local,s3")
    ap.add_argument("--interval", type=int, default=1)
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--publish-every", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--window", type=int, default=30)
    ap.add_argument("--json")
    a = ap.parse_args()
    interval_s = a.interval
    result = {"interval_s": a.interval, "wrk": f"wrk -t2 -c32 -d{a.duration}s --latency (POST /predict)",
              "publish_every_s": a.publish_every}
    for kind in a.stores.split(","):
        with tempfile.TemporaryDirectory(prefix=f"bench-refresh-{kind}-") as work:
            print(f"bench-refresh: {kind} store: publishing {a.trials + 2} versions", flush=True)
            store = Store(kind, a.trainer, work, a.trials + 2)
            try:
                pr = Predict(a.predict, store.env, store.model_uri, a.interval, os.path.join(work, "predict.log"))
                try:
                    print(f"bench-refresh: {kind}: publish -> first answer from the new version, "
                          f"{a.trials} trials, interval {a.interval} s", flush=True)
                    rows = time_to_new_version(store, pr, a.interval, a.trials)
                    for row in rows:
                        print(f"  total {row['total_ms']:7.1f} ms = wait {row['wait_ms']:7.1f} + load {row['load_ms']:6.1f}"
                              f" + answer {row['answer_ms']:5.1f}", flush=True)
                    print(f"bench-refresh: {kind}: wrk while latest moves every {a.publish_every} s vs no-op publishes",
                          flush=True)
                    runs = latency_during_swaps(store, pr, a.duration, a.warmup, a.publish_every, a.rounds)
                finally:
                    pr.stop()
                res = {"trials": rows, "wrk_runs": runs}
                for f in ("total_ms", "wait_ms", "load_ms", "answer_ms"):
                    res[f] = summary([r[f] for r in rows])
                res["total_minus_half_interval_ms"] = res["total_ms"]["median"] - a.interval * 500
                for k in ("steady", "swaps"):
                    rs = [r for r in runs if r["kind"] == k]
                    res[k] = {f: summary([r[f] for r in rs]) for f in ("rps", "p50_ms", "p99_ms")}
                # Ratios within each round (adjacent runs), then their range.
                pairs = [(next(r for r in runs if r["kind"] == "steady" and r["round"] == i),
                          next(r for r in runs if r["kind"] == "swaps" and r["round"] == i)) for i in range(a.rounds)]
                res["p99_ratio_swaps_over_steady"] = [s["p99_ms"] / q["p99_ms"] for q, s in pairs]
                res["p50_ratio_swaps_over_steady"] = [s["p50_ms"] / q["p50_ms"] for q, s in pairs]
                res["rps_ratio_swaps_over_steady"] = [s["rps"] / q["rps"] for q, s in pairs]
                if kind == "s3":
                    print(f"bench-refresh: s3: store requests while nothing changes ({a.window} s, interval 1 s)",
                          flush=True)
                    res["idle"] = idle_store_requests(store, a.predict, work, a.window)
                result[kind] = res
            finally:
                store.close()

    print()
    print(f"| store | publish -> new answers, median (min-max) ms | wait (poll phase) | load+verify+swap | "
          f"-> first answer | steady p50 / p99 ms | swaps p50 / p99 ms | p99 swaps/steady, median (range) of pairs |")
    print("|---|---|---|---|---|---|---|---|")
    for kind in a.stores.split(","):
        r = result.get(kind)
        if not r:
            continue
        f = lambda s, d=1: f"{s['median']:.{d}f} ({s['min']:.{d}f}-{s['max']:.{d}f})"
        ratios = r["p99_ratio_swaps_over_steady"]
        print(f"| {kind} | {f(r['total_ms'])} | {f(r['wait_ms'])} | {f(r['load_ms'], 2)} | {f(r['answer_ms'], 2)} | "
              f"{r['steady']['p50_ms']['median']:.2f} / {r['steady']['p99_ms']['median']:.2f} | "
              f"{r['swaps']['p50_ms']['median']:.2f} / {r['swaps']['p99_ms']['median']:.2f} | "
              f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) |")
    if "s3" in result and "idle" in result["s3"]:
        i = result["s3"]["idle"]
        print()
        print(f"S3, nothing changes: {i['requests']} requests in {i['window_s']:.1f} s at a 1 s interval "
              f"({i['requests_per_check']:.2f} per check; s3s-fs logged {i['s3s_fs_logged_routes']}) -> "
              f"{i['per_hour_at_30s']:.0f} requests/hour/instance at the default 30 s "
              f"({i['bytes_per_hour_at_30s'] / 1024:.1f} KiB/hour); model downloads: {i['model_downloads']}; "
              f"conditional (If-None-Match): {i['conditional']}")
        for k in i["by_kind"]:
            print(f"  {k[0]} {k[1]}  if-none-match={k[2]}  -> {k[3]}, {k[4]} bytes")
    for kind in a.stores.split(","):
        for run in result.get(kind, {}).get("wrk_runs", []):
            if run["non_2xx"] or run["socket_errors"]:
                print(f"warning: {kind} {run['kind']} round {run['round']}: non-2xx {run['non_2xx']}, "
                      f"socket errors {run['socket_errors']}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=2)
        print(f"written: {a.json}")


if __name__ == "__main__":
    main()
