"""Third-party clients against the running `predict` binary.

Each protocol is driven by its own ecosystem's client, none of which we wrote:
  - Open Inference Protocol (KServe V2): tritonclient.http (JSON and binary tensors);
  - MLflow / SageMaker scoring: pandas' own JSON and CSV writers over requests, and
    MLflow's ScoringServerClient;
  - Prometheus: prometheus_client's text-format parser.
Answers are compared with POST /predict on the same rows of data/digits.csv.

Usage: test_clients.py BASE_URL DIGITS_CSV
"""

import json
import sys
import traceback

import numpy as np
import pandas as pd
import requests
import tritonclient.http as triton
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

URL = sys.argv[1].rstrip("/")
HOSTPORT = URL.split("//", 1)[1]
DIGITS = pd.read_csv(sys.argv[2])
X = DIGITS.drop(columns="label").iloc[:50]
N = len(X)
TIMEOUT = 10

MODEL = requests.get(URL + "/model", timeout=TIMEOUT).json()
NAME = MODEL["name"]
REF = requests.post(URL + "/predict", json={"instances": X.values.tolist()}, timeout=TIMEOUT).json()["predictions"]
REF_LABELS = [p["label"] for p in REF]
REF_CLASSES = [p["predicted_class"] for p in REF]
REF_PROBA = np.array([p["probabilities"] for p in REF])

TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


def as_str(values):
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


@test
def triton_health_and_metadata():
    c = triton.InferenceServerClient(url=HOSTPORT)
    assert c.is_server_live()
    assert c.is_server_ready()
    assert c.is_model_ready(NAME)
    assert not c.is_model_ready("no-such-model")
    assert c.get_server_metadata()["name"] == "predict"
    md = c.get_model_metadata(NAME)
    assert md["name"] == NAME, md
    assert md["inputs"][0]["shape"] == [-1, 64], md
    assert [o["name"] for o in md["outputs"]] == ["label", "probabilities"], md
    assert c.is_model_ready(NAME, model_version=md["versions"][0])


@test
def triton_infer_json_fp32():
    c = triton.InferenceServerClient(url=HOSTPORT)
    inp = triton.InferInput("input", [N, 64], "FP32")
    inp.set_data_from_numpy(X.values.astype(np.float32), binary_data=False)
    outs = [triton.InferRequestedOutput(n, binary_data=False) for n in ("label", "probabilities")]
    r = c.infer(NAME, [inp], outputs=outs, request_id="7")
    assert r.get_response()["id"] == "7"
    assert as_str(r.as_numpy("label")) == REF_LABELS
    np.testing.assert_allclose(r.as_numpy("probabilities"), REF_PROBA, rtol=1e-12)


@test
def triton_infer_binary_int64_and_fp64():
    c = triton.InferenceServerClient(url=HOSTPORT)
    for dtype, np_type in (("INT64", np.int64), ("FP64", np.float64), ("UINT8", np.uint8)):
        inp = triton.InferInput("pixels", [N, 64], dtype)
        inp.set_data_from_numpy(X.values.astype(np_type))  # binary tensor extension
        r = c.infer(NAME, [inp])
        assert as_str(r.as_numpy("label")) == REF_LABELS, dtype
        assert r.as_numpy("probabilities").shape == (N, len(MODEL["classes"])), dtype


@test
def triton_errors_reach_the_client():
    c = triton.InferenceServerClient(url=HOSTPORT)
    inp = triton.InferInput("input", [1, 63], "FP64")
    inp.set_data_from_numpy(np.zeros((1, 63)), binary_data=False)
    try:
        c.infer(NAME, [inp])
        raise AssertionError("a 63-feature row was accepted")
    except InferenceServerException as e:
        assert "expected 64 features, got 63" in e.message(), e.message()
    try:
        c.infer("no-such-model", [inp])
        raise AssertionError("an unknown model was accepted")
    except InferenceServerException as e:
        assert "unknown model" in e.message(), e.message()


def invoke(body, content_type="application/json"):
    r = requests.post(URL + "/invocations", data=body, headers={"Content-Type": content_type}, timeout=TIMEOUT)
    assert r.status_code == 200, (r.status_code, r.text)
    return r.json()["predictions"]


@test
def pandas_split_records_and_csv():
    assert invoke(json.dumps({"dataframe_split": json.loads(X.to_json(orient="split"))})) == REF_CLASSES
    assert invoke(json.dumps({"dataframe_records": json.loads(X.to_json(orient="records"))})) == REF_CLASSES
    # Columns shuffled: matched by name, not position.
    shuffled = X[list(reversed(X.columns))]
    assert invoke(json.dumps({"dataframe_split": json.loads(shuffled.to_json(orient="split"))})) == REF_CLASSES
    assert invoke(shuffled.to_csv(index=False), "text/csv") == REF_CLASSES
    # MLflow reads CSV with pandas' read_csv: the first line is always the header, so a
    # headerless body is refused (naming line 1) rather than losing its first row.
    r = requests.post(URL + "/invocations", data=X.to_csv(index=False, header=False),
                      headers={"Content-Type": "text/csv"}, timeout=TIMEOUT)
    assert r.status_code == 422, (r.status_code, r.text)
    assert r.json()["message"].startswith("CSV line 1, column "), r.text
    # Unnamed columns (a frame made from a numpy array) are positional.
    plain = pd.DataFrame(X.values)
    assert invoke(json.dumps({"dataframe_split": json.loads(plain.to_json(orient="split"))})) == REF_CLASSES
    assert invoke(plain.to_csv(index=False), "text/csv") == REF_CLASSES
    assert invoke(json.dumps({"instances": X.values.tolist()})) == REF_CLASSES
    assert invoke(json.dumps({"inputs": X.to_dict(orient="list")})) == REF_CLASSES


@test
def pandas_nan_is_named_by_row_and_feature():
    bad = X.copy().astype(float)
    bad.iloc[3, 10] = np.nan
    r = requests.post(URL + "/invocations", data=json.dumps({"dataframe_split": json.loads(bad.to_json(orient="split"))}),
                      headers={"Content-Type": "application/json"}, timeout=TIMEOUT)
    assert r.status_code == 422, (r.status_code, r.text)
    assert r.json()["message"] == "row 3: feature 10 is not a finite number", r.text


@test
def mlflow_scoring_client():
    from mlflow.pyfunc.scoring_server.client import ScoringServerClient

    host, port = HOSTPORT.rsplit(":", 1)
    c = ScoringServerClient(host, int(port))
    c.wait_server_ready(timeout=10)
    res = c.invoke(X)
    got = res.get_predictions()
    values = got.iloc[:, 0].tolist() if hasattr(got, "iloc") else list(got)
    assert [int(v) for v in values] == REF_CLASSES, values[:5]


@test
def prometheus_parser_reads_metrics():
    requests.get(URL + "/v2/health/ready", timeout=TIMEOUT)
    text = requests.get(URL + "/metrics", timeout=TIMEOUT).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    reqs = families["predict_http_requests"]
    assert reqs.type == "counter", reqs.type
    by_route = {(s.labels["route"], s.labels["status"]): s.value for s in reqs.samples if s.name.endswith("_total")}
    assert by_route[("/predict", "200")] >= 1, by_route
    assert by_route[("/invocations", "200")] >= 8, by_route
    assert by_route[("/v2/models/{name}/infer", "200")] >= 4, by_route
    assert by_route[("/v2/health/ready", "200")] >= 1, by_route
    hist = families["predict_http_request_duration_seconds"]
    assert hist.type == "histogram", hist.type
    counts = {s.labels["route"]: s.value for s in hist.samples
              if s.name.endswith("_count") and s.labels["status"] == "200"}
    assert counts["/invocations"] == by_route[("/invocations", "200")], counts
    preds = families["predict_predictions"]
    per_class = {s.labels["class"]: s.value for s in preds.samples if s.name.endswith("_total")}
    assert set(per_class) == set(MODEL["classes"]), per_class
    assert sum(per_class.values()) >= 8 * N, per_class
    info = families["predict_model_info"].samples[0]
    assert info.labels["model_id"] == MODEL["model_id"], info.labels
    assert info.labels["version"] == MODEL["version"], info.labels
    loaded = families["predict_model_loaded_timestamp_seconds"].samples[0]
    assert loaded.value > 1.6e9, loaded


def main():
    passed = failed = 0
    for fn in TESTS:
        try:
            fn()
            passed += 1
            print(f"ok   {fn.__name__}")
        except Exception:  # report every failure, then fail the run
            failed += 1
            print(f"FAIL {fn.__name__}")
            traceback.print_exc()
    print(f"clients: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
