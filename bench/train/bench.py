#!/usr/bin/env python3
"""`make bench-train`: measure the trainer against its targets (issue 2), side by side.

1. digits accuracy and vs scikit-learn: the same stratified split (written by
   `trainer split`), the same scaling, objective (alpha = 1/C), max_iter and tol number;
   scikit-learn runs in a venv this script creates (.venv-bench, gitignored).
2. par vs seq: `trainer compare` on the default work (digits, 5 folds x 8 alphas + refit)
   and on generated data of growing size.
3. scale: single fits on generated data, 100k -> 1M rows, 50 features, 2 and 10 classes;
   fit time and peak RSS (VmHWM) against the size of the f64 feature matrix.

Everything lands in target/bench-train/ (work files) and reports/bench-train.json.
Run from the repository root: python3 bench/train/bench.py --trainer target/release/trainer
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import venv

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
WORK = os.path.join(ROOT, "target", "bench-train")
VENV = os.path.join(ROOT, ".venv-bench")
GRID = "0.01,0.0373,0.139,0.518,1.93,7.20,26.8,100"  # trainer's default grid


def sh(cmd, **kw):
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    return subprocess.run(cmd, check=True, text=True, stdout=subprocess.PIPE, **kw).stdout


def python_with_sklearn():
    py = os.path.join(VENV, "bin", "python")
    if not os.path.exists(py):
        venv.create(VENV, with_pip=True)
    probe = subprocess.run([py, "-c", "import sklearn, numpy"], capture_output=True)
    if probe.returncode != 0:
        sh([py, "-m", "pip", "install", "--quiet", "scikit-learn", "numpy"])
    return py


def fit(trainer, args, tag):
    report = os.path.join(WORK, f"{tag}.json")
    sh([trainer, "fit", "--store", os.path.join(WORK, "artifacts"), "--report", report] + args)
    return read_report(report)


def compare_cmd(trainer, args, tag, rounds):
    """`trainer compare` (seq and par interleaved in one process, `rounds` times each) and
    the path of its JSON report."""
    report = os.path.join(WORK, f"{tag}.json")
    return [trainer, "compare", "--report", report, "--rounds", str(rounds)] + args, report


def read_report(path):
    with open(path) as f:
        return json.load(f)


def compare_runs(trainer, args, tag, rounds):
    cmd, report = compare_cmd(trainer, args, tag, rounds)
    sh(cmd)
    return read_report(report)


def core_probe(trainer):
    """What the two cores give right now: the same single-threaded work (digits model
    selection, `compare --threads 1`) alone, then two copies at once. On an idle 2-core
    machine all three times are equal; a copy that takes longer ran on a core that was
    slower or shared at the time, and a par/seq figure measured then says more about the
    machine than about the code."""
    def seconds(r):
        return statistics.median(r["seq_seconds"] + r["par_seconds"])

    alone = seconds(compare_runs(trainer, ["--threads", "1"], "probe-alone", 3))
    both = [compare_cmd(trainer, ["--threads", "1"], f"probe-{t}", 3) for t in ("a", "b")]
    procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for cmd, _ in both]
    for p in procs:
        if p.wait() != 0:
            raise RuntimeError("core probe failed")
    pair = [seconds(read_report(report)) for _, report in both]
    return {"alone_s": alone, "together_s": pair}


def split_seeds(trainer, py, n):
    """Holdout accuracy on `n` seeded stratified splits (seeds 0..n-1): `trainer fit` with
    its defaults, the original's recipe and ours in scikit-learn, on the very same rows. One
    split's figure moves by a few rows with the seed; the means say what a recipe is worth."""
    if n < 1:
        return None
    pairs, ours, alphas = [], [], []
    for seed in range(n):
        tr, te = os.path.join(WORK, f"seed{seed}-train.csv"), os.path.join(WORK, f"seed{seed}-test.csv")
        sh([trainer, "split", "--data", "data/digits.csv", "--seed", str(seed), "--train-out", tr, "--test-out", te])
        r = fit(trainer, ["--data", tr, "--test-data", te, "--seed", str(seed)], f"seed{seed}")
        pairs.append(f"{tr}:{te}")
        ours.append(r["accuracy"])
        alphas.append(r["alpha"])
    sk = json.loads(sh([py, os.path.join(ROOT, "bench", "train", "splits.py"), "--alphas", GRID, "--folds", "5"] + pairs,
                       env=dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")))
    return {"seeds": n, "trainer": ours, "trainer_alpha": alphas, **sk}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trainer", default=os.path.join(ROOT, "target", "release", "trainer"))
    ap.add_argument("--repeat", type=int, default=5,
                    help="timed runs of each fit per block, ours and scikit-learn's")
    ap.add_argument("--blocks", type=int, default=9,
                    help="blocks of ours-then-scikit-learn timings; ratios are taken within a block")
    ap.add_argument("--scale-rows", default="100000,300000,1000000")
    ap.add_argument("--split-seeds", type=int, default=30,
                    help="seeded splits (seeds 0..N-1) the holdout accuracy is also measured on")
    a = ap.parse_args()
    trainer = os.path.abspath(a.trainer)
    os.makedirs(WORK, exist_ok=True)
    os.chdir(ROOT)
    cores = os.cpu_count()
    out = {"cores": cores, "repeat": a.repeat, "load_average_at_start": os.getloadavg(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    # 1. digits vs scikit-learn, same split.
    train_csv, test_csv = os.path.join(WORK, "digits-train.csv"), os.path.join(WORK, "digits-test.csv")
    sh([trainer, "split", "--data", "data/digits.csv", "--seed", "42", "--train-out", train_csv, "--test-out", test_csv])
    same = ["--data", train_csv, "--test-data", test_csv]
    # Side by side in blocks: each block times our fits (seq / par interleaved in one process)
    # and then scikit-learn's (in one process), `--repeat` fits each; loading is outside every
    # clock. A ratio is taken within each block, so a machine whose speed drifts between the
    # first and the last block still compares like with like; the headline ratio is the median
    # of the blocks' ratios, the times are medians over all fits.
    py = python_with_sklearn()
    blocks = []
    for b in range(a.blocks):
        sc = compare_runs(trainer, same + ["--alphas", "1"], f"digits-single-{b}", a.repeat)
        cc = compare_runs(trainer, same, f"digits-cv-{b}", a.repeat)
        sk = json.loads(sh([py, os.path.join(ROOT, "bench", "train", "sklearn_ref.py"), "--train", train_csv,
                            "--test", test_csv, "--alpha", "1", "--alphas", GRID, "--folds", "5",
                            "--max-iter", "1000", "--tol", "1e-4", "--repeat", str(a.repeat),
                            "--cv-repeat", str(a.repeat)],
                        env=dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")))
        blocks.append({"single": sc, "cv": cc, "sklearn": sk})
    med = statistics.median

    def runs(key, side):
        return [t for blk in blocks for t in blk[key][side]]

    def ratios(key, side, sk_key):
        return [med(blk["sklearn"][sk_key]) / med(blk[key][side]) for blk in blocks]

    single, cv, sk = blocks[-1]["single"]["par"], blocks[-1]["cv"]["par"], blocks[-1]["sklearn"]
    sk_single, sk_cv = runs("sklearn", "single_fit_runs"), runs("sklearn", "cv_fit_runs")
    single_s, single_seq_s = med(runs("single", "par_seconds")), med(runs("single", "seq_seconds"))
    cv_s, cv_seq_s = med(runs("cv", "par_seconds")), med(runs("cv", "seq_seconds"))
    default = fit(trainer, [], "digits-default")
    # The original's own split and recipe (unscaled pixels), and our trainer on that split.
    o_train, o_test = os.path.join(WORK, "original-train.csv"), os.path.join(WORK, "original-test.csv")
    orig = json.loads(sh([py, os.path.join(ROOT, "bench", "train", "original_recipe.py"), "--data", "data/digits.csv",
                          "--train-out", o_train, "--test-out", o_test],
                         env=dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")))
    ours_on_orig = fit(trainer, ["--data", o_train, "--test-data", o_test], "digits-original-split")
    orig["rust_accuracy"], orig["rust_alpha"] = ours_on_orig["accuracy"], ours_on_orig["alpha"]
    out["original_split"] = orig
    out["split_seeds"] = split_seeds(trainer, py, a.split_seeds)
    out["digits"] = {
        "default_fit_accuracy": default["accuracy"], "default_fit_alpha": default["alpha"],
        "blocks": a.blocks,
        "single_fit": {"rust_par_s": single_s, "rust_seq_s": single_seq_s, "rust_accuracy": single["accuracy"],
                       "rust_iterations": single["iterations"], "sklearn_s": med(sk_single),
                       "sklearn_accuracy": sk["single_fit_accuracy"], "sklearn_iterations": sk["single_fit_iterations"],
                       "block_ratios_par": ratios("single", "par_seconds", "single_fit_runs"),
                       "block_ratios_seq": ratios("single", "seq_seconds", "single_fit_runs")},
        "model_selection": {"rust_par_s": cv_s, "rust_seq_s": cv_seq_s, "rust_accuracy": cv["accuracy"],
                            "rust_alpha": cv["alpha"], "sklearn_s": med(sk_cv),
                            "sklearn_accuracy": sk["cv_accuracy"], "sklearn_alpha": sk["cv_chosen_alpha"],
                            "block_ratios_par": ratios("cv", "par_seconds", "cv_fit_runs"),
                            "block_ratios_seq": ratios("cv", "seq_seconds", "cv_fit_runs")},
        "sklearn_version": sk["sklearn_version"],
    }
    for part in (out["digits"]["single_fit"], out["digits"]["model_selection"]):
        part["speedup_par"] = med(part["block_ratios_par"])
        part["speedup_seq"] = med(part["block_ratios_seq"])

    # 2. par vs seq: the default work, then growing generated data.
    def compare(args, tag, rounds):
        r = compare_runs(trainer, args, tag, rounds)
        return {"seq_s": statistics.median(r["seq_seconds"]), "par_s": statistics.median(r["par_seconds"]),
                "speedup": r["speedup"], "rounds": r["rounds"], "seq_runs": r["seq_seconds"],
                "par_runs": r["par_seconds"], "threads": r["threads"], "identical": r["identical"],
                "accuracy": r["par"]["accuracy"]}

    out["cores_before"] = core_probe(trainer)
    out["compare_default"] = compare([], "compare-default", 11)
    out["cores_after"] = core_probe(trainer)
    sizes = []
    # Rounds enough for each size to take a second or more: this VM's second vCPU runs at
    # half speed for stretches of a few hundred milliseconds at a time (two pinned spin loops
    # show it), and 15 rounds of the 500-row work (75 ms) once fell wholly into one of them.
    for rows, rounds in [(500, 201), (5000, 61), (50000, 11), (200000, 5)]:
        path = os.path.join(WORK, f"gen-{rows}.csv")
        if not os.path.exists(path):
            sh([trainer, "generate", "--rows", str(rows), "--features", "20", "--classes", "4", "--seed", "1", "--out", path])
        r = compare(["--data", path, "--alphas", "0.1,1,10", "--folds", "3"], f"compare-{rows}", rounds)
        r["rows"] = rows
        sizes.append(r)
    out["compare_sizes"] = sizes

    # 3. scale: single fits, 50 features, 2 and 10 classes.
    scale = []
    for classes in [2, 10]:
        for rows in [int(v) for v in a.scale_rows.split(",")]:
            path = os.path.join(WORK, f"scale-{rows}-{classes}.csv")
            if not os.path.exists(path):
                sh([trainer, "generate", "--rows", str(rows), "--features", "50", "--classes", str(classes),
                    "--seed", "5", "--out", path])
            r = fit(trainer, ["--data", path, "--alphas", "1"], f"scale-{rows}-{classes}")
            scale.append({"rows": rows, "classes": classes, "fit_s": r["fit_seconds"], "load_s": r["load_seconds"],
                          "iterations": r["iterations"], "evaluations": r["evaluations"],
                          "s_per_eval_per_1k_rows": r["fit_seconds"] / max(r["evaluations"], 1) / rows * 1000,
                          "peak_rss_bytes": r["peak_rss_bytes"], "matrix_bytes": r["feature_matrix_bytes"],
                          "peak_over_matrix": r["peak_rss_bytes"] / r["feature_matrix_bytes"],
                          "accuracy": r["accuracy"]})
    out["scale"] = scale

    os.makedirs(os.path.join(ROOT, "reports"), exist_ok=True)
    with open(os.path.join(ROOT, "reports", "bench-train.json"), "w") as f:
        json.dump(out, f, indent=2)
    print_summary(out)


def print_summary(o):
    d = o["digits"]
    s, m = d["single_fit"], d["model_selection"]
    ok = lambda c: "PASS" if c else "MISS"
    print(f"\n== bench-train on {o['cores']} cores, load average at start {o['load_average_at_start'][0]:.1f} "
          f"(scikit-learn {d['sklearn_version']}, single-threaded BLAS) ==")
    print(f"digits holdout accuracy (trainer fit defaults): {d['default_fit_accuracy']:.4f} "
          f"(alpha {d['default_fit_alpha']})  target >= 0.975: {ok(d['default_fit_accuracy'] >= 0.975)}")
    r = o.get("original_split")
    if r:
        print(f"  the original's split (train_test_split, random_state=42, {r['test_rows']} test rows): "
              f"original recipe, unscaled {r['unscaled_accuracy']:.4f}; same model scaled {r['scaled_accuracy']:.4f}; "
              f"trainer fit {r['rust_accuracy']:.4f} (alpha {r['rust_alpha']})")
    ss = o.get("split_seeds")
    if ss:
        line = lambda v: f"mean {statistics.mean(v):.4f} [{min(v):.4f}-{max(v):.4f}], >= 0.975 on {sum(x >= 0.975 for x in v)}"
        print(f"  {ss['seeds']} seeded splits (seeds 0-{ss['seeds'] - 1}, the same rows for each recipe):")
        print(f"    trainer fit defaults                  {line(ss['trainer'])}")
        print(f"    original recipe (unscaled, C=1)       {line(ss['original_unscaled'])}")
        print(f"    scikit-learn, our recipe (scaled, CV) {line(ss['sklearn_scaled_cv'])}")
        wins = sum(t >= o_ for t, o_ in zip(ss["trainer"], ss["original_unscaled"]))
        print(f"    trainer >= original recipe on {wins} of {ss['seeds']} splits")
    print(f"digits vs scikit-learn: {d['blocks']} blocks of {o['repeat']} fits each side; times are medians of all "
          f"fits, ratios the median of the blocks' ratios [lowest-highest block]")
    span = lambda v: f"[{min(v):.1f}-{max(v):.1f}]"
    print(f"{'':34}{'rust par':>10}{'rust seq':>10}{'sklearn':>10}{'ratio par':>11}{'ratio seq':>11}")
    print(f"{'single fit (alpha=1) seconds':34}{s['rust_par_s']:>10.4f}{s['rust_seq_s']:>10.4f}{s['sklearn_s']:>10.4f}"
          f"{s['speedup_par']:>10.1f}x{s['speedup_seq']:>10.1f}x  {ok(s['speedup_par'] >= 5)}  par {span(s['block_ratios_par'])}")
    print(f"{'  accuracy / iterations':34}{s['rust_accuracy']:>10.4f}{'':>10}{s['sklearn_accuracy']:>10.4f}"
          f"   iters {s['rust_iterations']} vs {s['sklearn_iterations']}")
    print(f"{'5 folds x 8 alphas + refit seconds':34}{m['rust_par_s']:>10.4f}{m['rust_seq_s']:>10.4f}{m['sklearn_s']:>10.4f}"
          f"{m['speedup_par']:>10.1f}x{m['speedup_seq']:>10.1f}x  {ok(m['speedup_par'] >= 5 and m['rust_accuracy'] >= m['sklearn_accuracy'])}"
          f"  par {span(m['block_ratios_par'])}")
    print(f"{'  accuracy / chosen alpha':34}{m['rust_accuracy']:>10.4f}{'':>10}{m['sklearn_accuracy']:>10.4f}"
          f"   alpha {m['rust_alpha']} vs {m['sklearn_alpha']:.4g}")
    c = o["compare_default"]
    print(f"\ncompare (digits default work, medians of {c['rounds']} interleaved rounds): seq {c['seq_s']:.4f}s "
          f"par {c['par_s']:.4f}s on {c['threads']} threads "
          f"-> {c['speedup']:.2f}x, identical {c['identical']}  target >= 1.7x: {ok(c['speedup'] >= 1.7)}")
    if "cores_before" in o:
        b, a = o["cores_before"], o["cores_after"]
        print("  machine check, the same single-threaded work alone, then two copies at once (seconds): "
              f"before {b['alone_s']:.3f} / {b['together_s'][0]:.3f} + {b['together_s'][1]:.3f}, "
              f"after {a['alone_s']:.3f} / {a['together_s'][0]:.3f} + {a['together_s'][1]:.3f}")
    for r in o["compare_sizes"]:
        print(f"  {r['rows']:>8} rows x 20 features, 4 classes, 3x3 CV ({r['rounds']} rounds): seq {r['seq_s']:.4f}s par {r['par_s']:.4f}s "
              f"-> {r['speedup']:.2f}x  never slower: {ok(r['speedup'] >= 1.0)}")
    print("\nscale (single fit, alpha=1, 50 features, par):")
    print(f"{'rows':>9}{'classes':>8}{'fit s':>9}{'iters':>7}{'us/eval/1k rows':>17}{'peak RSS MB':>13}{'matrix MB':>11}{'ratio':>7}")
    for r in o["scale"]:
        print(f"{r['rows']:>9}{r['classes']:>8}{r['fit_s']:>9.3f}{r['iterations']:>7}{r['s_per_eval_per_1k_rows']*1e6:>17.1f}"
              f"{r['peak_rss_bytes']/1e6:>13.1f}{r['matrix_bytes']/1e6:>11.1f}{r['peak_over_matrix']:>7.2f}")
    print("\nfull numbers: reports/bench-train.json")


if __name__ == "__main__":
    main()
