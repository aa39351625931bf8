"""scikit-learn reference for `make bench-train`.

Runs on exactly the split the Rust trainer uses (written by `trainer split`), scaled the
same way (StandardScaler fitted on the training rows), with the same objective
(alpha = 1/C), iteration limit and tolerance number. Prints one JSON object.

    python sklearn_ref.py --train train.csv --test test.csv --alpha 1 \
        --alphas 0.01,...,100 --folds 5 --max-iter 1000 --tol 1e-4 --repeat 3
"""

import argparse
import json
import statistics
import time
import warnings

import numpy as np
import sklearn
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler


def load(path):
    data = np.loadtxt(path, delimiter=",", skiprows=1)
    return data[:, :-1], data[:, -1].astype(int)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--alphas", required=True)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--max-iter", type=int, default=1000)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cv-repeat", type=int, default=1)
    a = ap.parse_args()
    warnings.simplefilter("ignore", ConvergenceWarning)
    warnings.simplefilter("ignore", FutureWarning)

    x_train, y_train = load(a.train)
    x_test, y_test = load(a.test)
    scaler = StandardScaler().fit(x_train)
    xs_train, xs_test = scaler.transform(x_train), scaler.transform(x_test)

    single_times, single_acc, single_iter = [], None, None
    for _ in range(a.repeat):
        clf = LogisticRegression(C=1.0 / a.alpha, max_iter=a.max_iter, tol=a.tol, solver="lbfgs")
        t0 = time.perf_counter()
        clf.fit(xs_train, y_train)
        single_times.append(time.perf_counter() - t0)
        single_acc = float((clf.predict(xs_test) == y_test).mean())
        single_iter = int(np.max(clf.n_iter_))

    alphas = [float(v) for v in a.alphas.split(",")]
    cs = [1.0 / v for v in alphas]
    cv_times, cv_acc, cv_c = [], None, None
    for _ in range(a.cv_repeat):
        cv = StratifiedKFold(n_splits=a.folds, shuffle=True, random_state=a.seed)
        clf = LogisticRegressionCV(Cs=cs, cv=cv, max_iter=a.max_iter, tol=a.tol, solver="lbfgs")
        t0 = time.perf_counter()
        clf.fit(xs_train, y_train)
        cv_times.append(time.perf_counter() - t0)
        cv_acc = float((clf.predict(xs_test) == y_test).mean())
        cv_c = float(np.ravel(clf.C_)[0])

    print(json.dumps({
        "sklearn_version": sklearn.__version__,
        "numpy_version": np.__version__,
        "single_fit_seconds": statistics.median(single_times),
        "single_fit_runs": single_times,
        "single_fit_accuracy": single_acc,
        "single_fit_iterations": single_iter,
        "cv_fit_seconds": statistics.median(cv_times),
        "cv_fit_runs": cv_times,
        "cv_accuracy": cv_acc,
        "cv_chosen_alpha": 1.0 / cv_c,
    }))


if __name__ == "__main__":
    main()
