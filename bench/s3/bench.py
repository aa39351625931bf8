#!/usr/bin/env python3
"""S3 benchmark (issue 4): publish round trips per object, and predict's cold start from S3.

Starts its own s3s-fs on a loopback port in a temporary directory, publishes the digits
model with `trainer fit --store s3://bench/models`, counts the requests s3s-fs logs for
each object during that publish, then starts `predict` with MODEL_URI=s3://bench/models/digits
N times and measures spawn -> first 200 on GET /health (median). Prints a table; --json FILE
also writes the numbers.
"""
import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter

ROUTE = re.compile(r'resolved route, op: (\w+), s3_path: Object \{ bucket: "([^"]*)", key: "([^"]*)" \}')
AK, SK, BUCKET = "bench-access-key", "bench-secret-key-0123456789", "bench"


def start_s3s(root, log_path):
    data = os.path.join(root, "data")
    os.makedirs(os.path.join(data, BUCKET))  # an s3s-fs bucket is a directory
    log = open(log_path, "w")
    env = dict(os.environ, RUST_LOG="s3s_fs=info,s3s::ops=debug", NO_COLOR="1")
    p = subprocess.Popen(
        ["s3s-fs", "--host", "127.0.0.1", "--port", "0", "--access-key", AK, "--secret-key", SK, data],
        stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.time() + 20
    while time.time() < deadline:
        m = re.search(r"server is running at http://(127\.0\.0\.1:\d+)", open(log_path).read())
        if m:
            return p, m.group(1)
        if p.poll() is not None:
            sys.exit(f"s3s-fs exited: {open(log_path).read()}")
        time.sleep(0.01)
    p.kill()
    sys.exit("s3s-fs did not start")


def routes(log_path):
    return ROUTE.findall(open(log_path).read())


def health_ok(addr):
    try:
        with socket.create_connection(addr, timeout=1) as s:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cold_start(predict, env, model_uri):
    port = free_port()
    e = dict(env, MODEL_URI=model_uri, HOST="127.0.0.1", PORT=str(port), RUST_LOG="warn")
    t0 = time.perf_counter()
    p = subprocess.Popen([predict], env=e, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while True:
            if health_ok(("127.0.0.1", port)):
                return (time.perf_counter() - t0) * 1e3
            if p.poll() is not None:
                sys.exit(f"predict exited: {p.stderr.read().decode()}")
            if time.perf_counter() - t0 > 20:
                sys.exit("predict did not answer within 20 s")
            time.sleep(0.0005)
    finally:
        p.send_signal(signal.SIGTERM)  # only the process started here
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trainer", default="target/release/trainer")
    ap.add_argument("--predict", default="target/release/predict")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--json")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-s3-") as root:
        log_path = os.path.join(root, "s3s-fs.log")
        server, hostport = start_s3s(root, log_path)
        try:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TRAINER_"))}
            env.update(AWS_ENDPOINT_URL=f"http://{hostport}", AWS_ACCESS_KEY_ID=AK,
                       AWS_SECRET_ACCESS_KEY=SK, AWS_REGION="us-east-1")
            before = len(routes(log_path))
            subprocess.run([a.trainer, "fit", "--data", "data/digits.csv", "--store", f"s3://{BUCKET}/models",
                            "--name", "digits", "--report", os.path.join(root, "report.json")],
                           env=env, check=True, stdout=subprocess.DEVNULL)
            time.sleep(0.2)
            during = routes(log_path)[before:]
            per_object = Counter(key for _op, _bucket, key in during)
            times = [cold_start(a.predict, env, f"s3://{BUCKET}/models/digits") for _ in range(a.runs)]
            # The same with the version's own URI: one GET instead of two (no `latest`).
            with open(os.path.join(root, "report.json")) as f:
                version_uri = json.load(f)["model_uri"]
            vtimes = [cold_start(a.predict, env, version_uri) for _ in range(a.runs)]
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait()
    result = {
        "publish_requests": [{"op": op, "key": key} for op, _b, key in during],
        "publish_objects": len(per_object),
        "max_requests_per_object": max(per_object.values()) if per_object else 0,
        "cold_start_ms": [round(t, 2) for t in times],
        "cold_start_median_ms": round(statistics.median(times), 2),
        "cold_start_version_uri_ms": [round(t, 2) for t in vtimes],
        "cold_start_version_uri_median_ms": round(statistics.median(vtimes), 2),
        "predict": a.predict,
    }
    print(f"publish: {len(during)} requests for {len(per_object)} objects "
          f"(max {result['max_requests_per_object']} per object)")
    for op, _b, key in during:
        print(f"  {op:<10} {key}")
    print(f"predict cold start from S3, spawn -> first 200 /health, {a.runs} runs: "
          f"median {result['cold_start_median_ms']} ms (min {min(times):.2f}, max {max(times):.2f})")
    print(f"predict cold start from S3 with the version URI (one GET): "
          f"median {result['cold_start_version_uri_median_ms']} ms (min {min(vtimes):.2f}, max {max(vtimes):.2f})")
    print("  runs (ms), latest:  " + " ".join(f"{t:.1f}" for t in times))
    print("  runs (ms), version: " + " ".join(f"{t:.1f}" for t in vtimes))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
