"""Holdout accuracy of the scikit-learn recipes on many seeded splits, for `make bench-train`.

For each train / test pair (written by `trainer split --seed S`): the Python original's
recipe (`LogisticRegression(max_iter=1000)` on unscaled pixels, as it reported 0.9750
with) and our recipe in scikit-learn (StandardScaler on the training rows, then
`LogisticRegressionCV` over the trainer's alpha grid, stratified shuffled folds). Prints
one JSON object: a list of accuracies per recipe, in the order of the pairs.

    python splits.py --alphas 0.01,...,100 --folds 5 a-train.csv:a-test.csv b-train.csv:b-test.csv
"""

import argparse
import json
import warnings

from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler

from sklearn_ref import load  # beside this file: the same CSV reader for every reference run


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--alphas", required=True)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("pairs", nargs="+", help="TRAIN.csv:TEST.csv")
    a = ap.parse_args()
    warnings.simplefilter("ignore", ConvergenceWarning)
    warnings.simplefilter("ignore", FutureWarning)
    cs = [1.0 / float(v) for v in a.alphas.split(",")]
    original, scaled_cv = [], []
    for i, pair in enumerate(a.pairs):
        train, test = pair.split(":")
        x_tr, y_tr = load(train)
        x_te, y_te = load(test)
        original.append(float(LogisticRegression(max_iter=1000).fit(x_tr, y_tr).score(x_te, y_te)))
        s = StandardScaler().fit(x_tr)
        cv = StratifiedKFold(n_splits=a.folds, shuffle=True, random_state=i)
        clf = LogisticRegressionCV(Cs=cs, cv=cv, max_iter=1000, tol=1e-4, solver="lbfgs")
        scaled_cv.append(float(clf.fit(s.transform(x_tr), y_tr).score(s.transform(x_te), y_te)))
    print(json.dumps({"original_unscaled": original, "sklearn_scaled_cv": scaled_cv}))


if __name__ == "__main__":
    main()
