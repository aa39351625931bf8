"""The scikit-learn side of `make bench-score`: pandas read + predict_proba + write.

The same model as the score function (our artifact's scaler, coefficients and intercepts put
into StandardScaler and LogisticRegression), the same input file and the same output columns
(id, label, proba_<class>). Prints one JSON line: rows and seconds.
usage: python sklearn_score.py MODEL_JSON INPUT_CSV OUTPUT_CSV
"""

import json
import sys
import time

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler


def main():
    model_json, input_csv, output_csv = sys.argv[1:4]
    with open(model_json) as f:
        a = json.load(f)
    features, classes = a["feature_names"], a["classes"]
    scaler = StandardScaler()
    scaler.mean_ = np.array(a["scaler"]["mean"])
    scaler.scale_ = np.array(a["scaler"]["scale"])
    scaler.var_ = scaler.scale_ ** 2
    scaler.n_features_in_ = len(features)
    clf = LogisticRegression()
    clf.coef_ = np.array(a["coefficients"])
    clf.intercept_ = np.array(a["intercepts"])
    clf.classes_ = np.array(classes)
    clf.n_features_in_ = len(features)

    t0 = time.perf_counter()
    df = pd.read_csv(input_csv)
    x = df[features].to_numpy(dtype=np.float64)
    p = clf.predict_proba(scaler.transform(x))
    out = pd.DataFrame(p, columns=[f"proba_{c}" for c in classes])
    out.insert(0, "label", np.array(classes)[p.argmax(axis=1)])
    out.insert(0, "id", df["id"])
    out.to_csv(output_csv, index=False)
    seconds = time.perf_counter() - t0
    print(json.dumps({"rows": len(df), "seconds": seconds}))


if __name__ == "__main__":
    main()
