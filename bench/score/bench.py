#!/usr/bin/env python3
"""`make bench-score`: rows per second end to end (read, score, write) on a 1M-row CSV,
the score command against scikit-learn's predict_proba (pandas read + predict + write, in a
venv of its own, .venv-bench-score), one run each, side by side; peak RSS of both (the
children's ru_maxrss). The model is the digits test model (64 features, 10 classes); both
sides use the same coefficients, and the outputs are checked to agree.

Work files in target/bench-score/, the result in reports/bench-score.json.
usage: python3 bench/score/bench.py --score target/release/score [--rows 1000000]
"""

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import time
import venv

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
WORK = os.path.join(ROOT, "target", "bench-score")
VENV = os.path.join(ROOT, ".venv-bench-score")
HERE = os.path.dirname(os.path.abspath(__file__))


def sh(cmd, **kw):
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    return subprocess.run(cmd, check=True, text=True, stdout=subprocess.PIPE, cwd=ROOT, **kw).stdout


def python_with_sklearn():
    py = os.path.join(VENV, "bin", "python")
    if not os.path.exists(py):
        venv.create(VENV, with_pip=True)
    probe = subprocess.run([py, "-c", "import sklearn, pandas, numpy"], capture_output=True)
    if probe.returncode != 0:
        sh([py, "-m", "pip", "install", "--quiet", "-r", os.path.join(HERE, "requirements.txt")])
    return py


def timed(cmd, env=None):
    """Run cmd; its wall seconds, peak RSS (MiB) and stdout."""
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, cwd=ROOT, env=env)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    seconds = time.perf_counter() - t0
    if status != 0:
        raise SystemExit(f"{cmd[0]} failed ({status})")
    return seconds, usage.ru_maxrss / 1024, out


def make_input(path, rows):
    header, data = None, []
    with open(os.path.join(ROOT, "data", "digits.csv")) as f:
        r = csv.reader(f)
        header = next(r)
        data = [row for row in r]
    feat = [i for i, h in enumerate(header) if h != "label"]
    rnd = random.Random(19)
    with open(path, "w") as f:
        f.write("id," + ",".join(header[i] for i in feat) + "\n")
        lines = []
        for i in range(rows):
            row = data[rnd.randrange(len(data))]
            lines.append(f"r{i}," + ",".join(row[j] for j in feat))
            if len(lines) == 50_000:
                f.write("\n".join(lines) + "\n")
                lines = []
        if lines:
            f.write("\n".join(lines) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--score", required=True)
    ap.add_argument("--rows", type=int, default=1_000_000)
    args = ap.parse_args()
    os.makedirs(WORK, exist_ok=True)
    py = python_with_sklearn()
    store = os.path.join(WORK, "store")
    if not os.path.isdir(os.path.join(store, "digits")):
        sh(["cargo", "run", "--quiet", "-p", "predict", "--example", "test_model", "--", store])
    with open(os.path.join(store, "digits", "latest")) as f:
        version = json.load(f)["version"]
    model_json = os.path.join(store, "digits", version, "model.json")
    data = os.path.join(WORK, f"rows-{args.rows}.csv")
    if not os.path.exists(data):
        make_input(data, args.rows)
    size_mb = os.path.getsize(data) / 2**20

    env = dict(os.environ, RUST_LOG="warn")
    env.pop("AWS_LAMBDA_RUNTIME_API", None)
    ours_out = os.path.join(WORK, "score.out.csv")
    s_secs, s_rss, s_stdout = timed([args.score, "--model", os.path.join(store, "digits"), "--input", data,
                                      "--output", ours_out, "--id-columns", "id"], env)
    manifest = json.loads(s_stdout)
    assert manifest["rows_scored"] == args.rows and manifest["rows_refused"] == 0, manifest

    ref_out = os.path.join(WORK, "sklearn.out.csv")
    k_secs, k_rss, k_stdout = timed([py, os.path.join(HERE, "sklearn_score.py"), model_json, data, ref_out])
    ref = json.loads(k_stdout)
    assert ref["rows"] == args.rows, ref

    # The two agree: same labels, probabilities within float rounding, on every row.
    worst, labels_differ, n = 0.0, 0, 0
    with open(ours_out) as a, open(ref_out) as b:
        ra, rb = csv.reader(a), csv.reader(b)
        ha, hb = next(ra), next(rb)
        assert ha == hb, (ha, hb)
        for x, y in zip(ra, rb):
            assert x[0] == y[0], (x[0], y[0])
            labels_differ += x[1] != y[1]
            worst = max(worst, max(abs(float(p) - float(q)) for p, q in zip(x[2:], y[2:])))
            n += 1
    assert n == args.rows, n

    result = {
        "rows": args.rows,
        "input_mib": round(size_mb, 1),
        "threads": os.cpu_count(),
        "score": {"seconds": round(s_secs, 3), "rows_per_s": round(args.rows / s_secs),
                  "peak_rss_mib": round(s_rss, 1)},
        "sklearn": {"seconds": round(k_secs, 3), "rows_per_s": round(args.rows / k_secs),
                    "peak_rss_mib": round(k_rss, 1), "inner_seconds": round(ref["seconds"], 3)},
        "speedup": round(k_secs / s_secs, 2),
        "rss_ratio": round(k_rss / s_rss, 1),
        "agreement": {"labels_differ": labels_differ, "max_abs_proba_diff": worst},
    }
    os.makedirs(os.path.join(ROOT, "reports"), exist_ok=True)
    with open(os.path.join(ROOT, "reports", "bench-score.json"), "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(f"\nbench-score: {args.rows} rows, {size_mb:.0f} MiB CSV, {os.cpu_count()} cores, one run each")
    print(f"  {'':24}{'seconds':>10}{'rows/s':>12}{'peak RSS MiB':>15}")
    print(f"  {'score (this project)':24}{s_secs:>10.2f}{args.rows / s_secs:>12,.0f}{s_rss:>15.0f}")
    print(f"  {'pandas + scikit-learn':24}{k_secs:>10.2f}{args.rows / k_secs:>12,.0f}{k_rss:>15.0f}")
    print(f"  speedup {k_secs / s_secs:.1f}x, RSS {k_rss / s_rss:.0f}x smaller; labels differ on {labels_differ} rows, "
          f"largest probability difference {worst:.1e}")


if __name__ == "__main__":
    main()
