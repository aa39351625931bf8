"""TrainWorkflow (infra/template.yaml), run for real (`make test-workflows-train`): the template
deployed to moto once, moto's Step Functions interpreter calling the real `train-worker` binary
under two `cargo lambda watch --concurrency 2` (the coordinator's plan and finish, the worker's CV
and gradient tasks), with moto's S3 holding the data, the staged rows and the store.

- digits: the execution publishes the model `trainer fit --mode seq` publishes from the same
  data (same model id, same artifact but its creation time), also with the refit over 2 shards;
- the loop: a `predict` server following `latest` picks the new version up without a restart;
- a CV task that fails (a real S3 403: a bucket policy denying the staged rows) is retried by the
  workflow once the fault is gone, and the model is the one a clean run gives;
- a CV task that keeps failing fails the execution naming the fold, and nothing is published.

Everything (moto, the emulators, predict) runs once per module and is stopped by pid.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import harness
import run as workflow_run

TRAINER = harness.ROOT / "target" / "debug" / "trainer"
PREDICT = harness.ROOT / "target" / "debug" / "predict"
DIGITS = harness.ROOT / "data" / "digits.csv"
NAME = "digits"
EXECUTION_TIMEOUT_SECONDS = 600
# A small grid (two penalties, so CV still runs, over three folds) where the default one is
# not the point: it keeps the suite's wall time down.
SMALL = {"folds": 3, "alphas": [0.1, 1.0]}
SMALL_FLAGS = ["--folds", "3", "--alphas", "0.1,1"]
# The worker's log line per task (functions/train-worker/src/main.rs).
TASK_LINE = re.compile(r'task "(?P<id>[^"]*)" cv start_ms=\d+ end_ms=\d+ (?:loaded=\w+ )?(?P<result>ok|\w+):?')


@pytest.fixture(scope="module")
def binaries() -> None:
    """The workspace's binaries the suite runs, built once before anything times out on them
    (the emulators then find train-worker built)."""
    done = subprocess.run(
        ["cargo", "build", "--quiet", "--package", "train-worker", "--bin", "train-worker",
         "--package", "trainer", "--bin", "trainer", "--package", "predict", "--bin", "predict"],
        cwd=harness.ROOT, capture_output=True, text=True, timeout=1800, check=False)
    assert done.returncode == 0, f"cargo build failed:\n{done.stderr[-4000:]}"


@pytest.fixture(scope="module")
def local(work: Path, binaries: None) -> Iterator[workflow_run.Local]:
    """moto with the template deployed (no bucket policy: see run.py) and the emulators of the
    coordinator and the worker, for every test of the module."""
    with workflow_run.Local(["TrainWorkflow"], work=work / "local", stack_name="digits") as started:
        yield started


@pytest.fixture(scope="module")
def bucket(local: workflow_run.Local) -> str:
    return local.output("ModelBucketName")


@pytest.fixture(scope="module")
def s3(local: workflow_run.Local) -> Any:
    return local.client("s3")


def upload_rows(work: Path, s3: Any, bucket: str, key: str, drop_last: int = 0) -> str:
    """data/digits.csv (less its last `drop_last` rows: other data, other staged objects, which
    no worker has cached yet) uploaded to `key`; returns its s3:// URI."""
    path = work / key.replace("/", "_")
    with open(DIGITS, newline="") as f:
        rows = list(csv.reader(f))
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows[:len(rows) - drop_last])
    s3.upload_file(str(path), bucket, key)
    return f"s3://{bucket}/{key}"


def trainer_fit(local: workflow_run.Local, work: Path, data: str, store: str, *flags: str) -> dict[str, Any]:
    """`trainer fit --mode seq` (the real binary) against moto's S3; returns its JSON report."""
    report = work / f"report-{uuid.uuid4().hex}.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRAINER_", "AWS_"))}
    env.update(workflow_run.LOCAL_ENV, AWS_ENDPOINT_URL_S3=local.endpoint)
    done = subprocess.run(
        [str(TRAINER), "fit", "--mode", "seq", "--data", data, "--store", store, "--name", NAME,
         "--report", str(report), *flags],
        env=env, capture_output=True, text=True, timeout=EXECUTION_TIMEOUT_SECONDS, check=False)
    assert done.returncode == 0, f"trainer fit {data} {store} {flags}:\n{done.stderr[-3000:]}"
    return json.loads(report.read_text())


def spec(bucket: str, data: str, **fields: Any) -> str:
    return json.dumps({"data": data, "store": f"s3://{bucket}/models", "name": NAME, **fields})


def succeeded(described: dict[str, Any]) -> dict[str, Any]:
    assert described["status"] == "SUCCEEDED", (
        f"{described['status']}: {described.get('error')}: {described.get('cause')}")
    return json.loads(described["output"])


def artifact(s3: Any, uri: str) -> dict[str, Any]:
    """The model.json of a published version `s3://bucket/prefix/name/version`."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return json.loads(s3.get_object(Bucket=bucket, Key=f"{key}/model.json")["Body"].read())


def published(s3: Any, bucket: str) -> tuple[set[str], bytes | None]:
    """The keys under models/<name>/ and the bytes of its `latest` (None: none yet)."""
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"models/{NAME}/")
    keys = {o["Key"] for page in pages for o in page.get("Contents", [])}
    latest = s3.get_object(Bucket=bucket, Key=f"models/{NAME}/latest")["Body"].read() \
        if f"models/{NAME}/latest" in keys else None
    return keys, latest


def deny_staged_reads(s3: Any, bucket: str) -> None:
    """A bucket policy denying GetObject on the staged rows only (moto enforces Deny)."""
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Sid": "DenyStagedRows", "Effect": "Deny", "Principal": "*",
                       "Action": "s3:GetObject",
                       "Resource": f"arn:aws:s3:::{bucket}/models/_staging/*.bin"}],
    }))


def cv_lines(log: Path, offset: int) -> list[tuple[str, str]]:
    """(task id, "ok" or the error type) of each CV task the worker logged after `offset`."""
    text = log.read_text(encoding="utf-8", errors="replace")[offset:]
    return [(m["id"], m["result"]) for m in TASK_LINE.finditer(text)]


@pytest.fixture(scope="module")
def digits(local: workflow_run.Local, work: Path, s3: Any, bucket: str) -> dict[str, Any]:
    """One execution on data/digits.csv with trainer fit's defaults; its output."""
    data = upload_rows(work, s3, bucket, "data/digits.csv")
    return succeeded(local.execute("TrainWorkflow", spec(bucket, data), EXECUTION_TIMEOUT_SECONDS))


def test_digits_publishes_the_model_trainer_fit_publishes(local, work, s3, bucket, digits):
    assert digits["name"] == NAME
    assert digits["uri"] == f"s3://{bucket}/models/{NAME}/{digits['version']}"
    assert digits["refit"] == "coordinator"
    metrics = digits["metrics"]
    assert metrics["accuracy"] > 0.9 and metrics["macro_f1"] > 0.9, metrics
    assert "cv_accuracy" in metrics, "8 penalties: CV ran"
    latest = json.loads(s3.get_object(Bucket=bucket, Key=f"models/{NAME}/latest")["Body"].read())
    assert latest["version"] == digits["version"]

    report = trainer_fit(local, work, f"s3://{bucket}/data/digits.csv", f"s3://{bucket}/reference")
    assert digits["model_id"] == report["model_id"], "the workflow's model is trainer fit --mode seq's"
    assert digits["alpha"] == report["alpha"]
    assert (metrics["accuracy"], metrics["macro_f1"]) == (report["accuracy"], report["macro_f1"])
    ours = artifact(s3, digits["uri"])
    theirs = artifact(s3, f"s3://{bucket}/reference/{NAME}/{report['version']}")
    for a in (ours, theirs):
        a.pop("created_at")
    assert ours == theirs, "the same artifact but its creation time"


def test_digits_with_the_refit_over_two_shards_gives_the_same_model(local, bucket, digits):
    log = local.logs["TrainWorkerFunction"]
    offset = len(log.read_text(encoding="utf-8", errors="replace"))
    result = succeeded(local.execute("TrainWorkflow", spec(bucket, f"s3://{bucket}/data/digits.csv", shards=2),
                                     EXECUTION_TIMEOUT_SECONDS))
    assert result["refit"] == "shards"
    assert result["model_id"] == digits["model_id"], "gradient rounds on the worker = the coordinator's refit"
    assert result["version"] != digits["version"]
    gradients = re.findall(r"gradient start_ms=\d+ end_ms=\d+ loaded=\w+ ok",
                           log.read_text(encoding="utf-8", errors="replace")[offset:])
    assert len(gradients) >= 2, "the worker answered gradient tasks (sent by the coordinator through the Lambda API)"


def get_json(url: str, data: bytes | None = None) -> tuple[int, dict[str, Any], dict[str, str]]:
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}"), dict(e.headers)


def test_a_running_predict_server_serves_the_version_the_workflow_published(local, work, bucket, digits):
    port = harness.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(workflow_run.LOCAL_ENV, AWS_ENDPOINT_URL_S3=local.endpoint, HOST="127.0.0.1", PORT=str(port),
               MODEL_URI=f"s3://{bucket}/models/{NAME}", MODEL_REFRESH_SECONDS="1")
    predict = harness.start("predict", [str(PREDICT)], work / "predict.log", env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        harness.wait_until(predict, lambda: harness.port_open(port), 60)
        status, model, _ = get_json(f"{base}/model")
        assert status == 200, model
        before = model["version"]
        result = succeeded(local.execute("TrainWorkflow", spec(bucket, f"s3://{bucket}/data/digits.csv", **SMALL),
                                         EXECUTION_TIMEOUT_SECONDS))
        assert result["version"] != before
        deadline = time.monotonic() + 30
        while (model := get_json(f"{base}/model")[1])["version"] != result["version"]:
            assert predict.alive(), f"predict exited:\n{predict.tail()}"
            assert time.monotonic() < deadline, (
                f"predict still serves {model['version']} 30 s after {result['version']} was published:\n{predict.tail()}")
            time.sleep(0.2)
        assert model["model_id"] == result["model_id"]
        with open(DIGITS, newline="") as f:
            row = next(csv.DictReader(f))
        label = row.pop("label")
        body = json.dumps({"features": [float(v) for v in row.values()]}).encode()
        status, answer, headers = get_json(f"{base}/predict", body)
        assert status == 200, answer
        assert answer["label"] == label, answer
        assert headers.get("x-model-version") == result["version"], headers
    finally:
        predict.stop()


def test_a_failed_cv_task_is_retried_and_the_model_is_the_same(local, work, s3, bucket):
    data = upload_rows(work, s3, bucket, "data/digits-retry.csv", drop_last=1)
    reference = trainer_fit(local, work, data, f"s3://{bucket}/reference", *SMALL_FLAGS)
    log = local.logs["TrainWorkerFunction"]
    offset = len(log.read_text(encoding="utf-8", errors="replace"))
    deny_staged_reads(s3, bucket)
    allowed = False
    try:
        execution = local.start_execution("TrainWorkflow", spec(bucket, data, **SMALL))
        deadline = time.monotonic() + 120
        while not any(result == "Failed" for _, result in cv_lines(log, offset)):
            assert time.monotonic() < deadline, f"no CV task failed within 120 s:\n{local.emulators['TrainWorkerFunction'].tail()}"
            time.sleep(0.05)
        s3.delete_bucket_policy(Bucket=bucket)
        allowed = True
        result = succeeded(local.wait(execution, EXECUTION_TIMEOUT_SECONDS))
    finally:
        if not allowed:
            s3.delete_bucket_policy(Bucket=bucket)
    assert result["model_id"] == reference["model_id"], "the retried run's model is a clean run's"
    lines = cv_lines(log, offset)
    failed = [i for i, (task, r) in enumerate(lines) if r == "Failed"]
    assert any(r == "ok" and task == lines[f][0] for f in failed for task, r in lines[f + 1:]), (
        f"a task that failed was answered ok later: {lines}")
    assert {r for _, r in lines} == {"Failed", "ok"}, lines


def test_a_cv_task_that_keeps_failing_fails_the_execution_and_publishes_nothing(local, work, s3, bucket, digits):
    data = upload_rows(work, s3, bucket, "data/digits-broken.csv", drop_last=2)
    before = published(s3, bucket)
    assert before[1] is not None, "a model published before (the digits run)"
    deny_staged_reads(s3, bucket)
    try:
        described = local.execute("TrainWorkflow", spec(bucket, data, **SMALL), EXECUTION_TIMEOUT_SECONDS)
    finally:
        s3.delete_bucket_policy(Bucket=bucket)
    assert described["status"] == "FAILED", described
    assert described.get("error") == "Refused", described
    assert "cv fold" in described.get("cause", ""), described
    assert published(s3, bucket) == before, "no new version, latest unchanged"


def test_a_retried_finish_answers_with_the_version_it_published_and_publishes_nothing(local, work, s3, bucket):
    """Finish retried after its publish succeeded (its answer lost): the tasks invoked one by
    one, as the workflow does, through the Invoke adapter; the second finish with the same plan
    and results finds its version instead of publishing the model again; a third, after `latest`
    is put back as if the first had died between writing its version and `latest`, completes
    the publish."""
    import deploy

    lam = deploy.clients(local.lambda_endpoint)("lambda")
    coordinator = local.deployment.physical["TrainCoordinatorFunction"]
    worker = local.deployment.physical["TrainWorkerFunction"]

    def invoke(function: str, event: dict[str, Any]) -> dict[str, Any]:
        answer = lam.invoke(FunctionName=function, Payload=json.dumps(event).encode())
        body = json.loads(answer["Payload"].read())
        assert "FunctionError" not in answer, f"{function}: {body}"
        return body

    data = upload_rows(work, s3, bucket, "data/digits-finish.csv", drop_last=3)
    latest_before = published(s3, bucket)[1]  # None when this test runs alone
    plan = invoke(coordinator, {"version": 1, "id": "plan",
                                "task": {"plan": json.loads(spec(bucket, data, **SMALL))}})["outcome"]["plan"]
    items = json.loads(s3.get_object(Bucket=plan["tasks"]["bucket"], Key=plan["tasks"]["key"])["Body"].read())
    assert [i["id"] for i in items] == ["cv fold 0", "cv fold 1", "cv fold 2"]
    results = [invoke(worker, item) for item in items]
    finish = {"version": 1, "id": "finish", "task": {"finish": {"plan": plan, "results": results}}}
    first = invoke(coordinator, finish)["outcome"]["finish"]
    assert first["published_now"] is True
    after_first = published(s3, bucket)
    second = invoke(coordinator, finish)["outcome"]["finish"]
    assert second["published_now"] is False, second
    assert (second["version"], second["model_id"]) == (first["version"], first["model_id"])
    assert published(s3, bucket) == after_first, "no second version, latest unchanged"

    # The first attempt wrote its version but not `latest` (the pointer as it was before): a
    # retry finds the version and completes the publish, still without a second version.
    if latest_before is None:
        s3.delete_object(Bucket=bucket, Key=f"models/{NAME}/latest")
    else:
        s3.put_object(Bucket=bucket, Key=f"models/{NAME}/latest", Body=latest_before)
    third = invoke(coordinator, finish)["outcome"]["finish"]
    assert third["published_now"] is False, third
    assert third["version"] == first["version"]
    keys, latest = published(s3, bucket)
    assert keys == after_first[0], "no second version"
    assert latest is not None and json.loads(latest)["version"] == first["version"], "latest completed"
