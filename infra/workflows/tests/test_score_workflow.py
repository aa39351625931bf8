"""ScoreWorkflow (infra/template.yaml): deployed to moto with its role, then run for real: moto's interpreter lists a prefix of the
stack's bucket and sends every object to the real `score` function under `cargo lambda watch`,
which reads a model and the files from moto's S3 and writes the scored files back
(`make test-workflows-score`)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

import deploy
import harness
import run as workflow_run
from test_deploy import statements

ROWS_PER_FILE = 25


@pytest.fixture(scope="module")
def template() -> Path:
    return deploy.TEMPLATE


@pytest.fixture(scope="module")
def deployed(moto: str, template: Path) -> deploy.Deployment:
    return deploy.deploy(moto, "digits", {"AllowedCidr": "203.0.113.7/32"}, template_path=template)


def test_score_workflow_deploys_with_a_least_privilege_role(moto, deployed):
    client = deploy.clients(moto)
    arn = deployed.outputs["ScoreWorkflowArn"]
    assert arn.endswith(":stateMachine:digits-score")
    described = client("stepfunctions").describe_state_machine(stateMachineArn=arn)
    definition = json.loads(described["definition"])
    fan = definition["States"]["ScoreFiles"]
    assert fan["MaxConcurrency"] == 10, "a number after substitution, not a string"
    assert fan["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    bucket = deployed.outputs["ModelBucketName"]
    assert fan["ItemReader"]["Parameters"]["Bucket"] == bucket
    function = deployed.physical["ScoreFunction"]
    task = fan["ItemProcessor"]["States"]["Score"]
    assert task["Parameters"]["FunctionName"] == function, "the function's name, as the emulator needs"

    iam = client("iam")
    role = described["roleArn"].rsplit("/", 1)[1]
    [policy] = iam.list_role_policies(RoleName=role)["PolicyNames"]
    doc = iam.get_role_policy(RoleName=role, PolicyName=policy)["PolicyDocument"]
    stmts = {s["Sid"]: s for s in statements(doc)}
    assert stmts["ListInput"]["Action"] == "s3:ListBucket"
    assert stmts["ListInput"]["Resource"] == f"arn:aws:s3:::{bucket}"
    assert stmts["ListInput"]["Condition"] == {"StringLike": {"s3:prefix": ["incoming/*"]}}
    function_arn = client("lambda").get_function(FunctionName=function)["Configuration"]["FunctionArn"]
    assert stmts["InvokeScore"]["Resource"] == [function_arn, f"{function_arn}:*"]
    assert stmts["MapChildren"]["Resource"] == arn, "its own map children, nothing else"
    assert set(stmts) == {"ListInput", "InvokeScore", "MapChildren", "MapChildrenState"}
    trust = iam.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]
    assert "states.amazonaws.com" in json.dumps(trust)


def publish_test_model(work: Path) -> Path:
    """A model in a local store, by the predict crate's test_model example (no trainer needed)."""
    store = work / "store"
    done = subprocess.run(["cargo", "run", "--quiet", "-p", "predict", "--example", "test_model", "--",
                           str(store)], cwd=harness.ROOT, capture_output=True, text=True,
                          timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return store


def digits_files(work: Path, count: int) -> dict[Path, list[dict[str, str]]]:
    with open(harness.ROOT / "data" / "digits.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    files = {}
    for i in range(count):
        part = rows[i * ROWS_PER_FILE:(i + 1) * ROWS_PER_FILE]
        path = work / f"part-{i}.csv"
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(part[0]))
            writer.writeheader()
            writer.writerows(part)
        files[path] = part
    return files


def test_score_workflow_scores_every_file_of_a_prefix(work, template):
    store = publish_test_model(work)
    files = digits_files(work, 3)
    puts = {p: f"models/{p.relative_to(store)}" for p in store.rglob("*") if p.is_file()}
    puts.update({p: f"incoming/batch-1/{p.name}" for p in files})
    # A key with a space and a `+`: sent to the function as is (not URL-decoded into "a  b").
    odd_path = next(iter(files))
    odd = "my file+v2.csv"
    odd_copy = work / "odd.csv"
    odd_copy.write_text(odd_path.read_text())
    puts[odd_copy] = f"incoming/batch-1/{odd}"
    # A file outside the batch's prefix must not be scored.
    other = work / "other.csv"
    other.write_text(next(iter(files)).read_text())
    puts[other] = "incoming/batch-2/other.csv"
    seen: dict[str, Any] = {}

    def inspect(client: Any, deployment: deploy.Deployment) -> None:
        s3, bucket = client("s3"), deployment.outputs["ModelBucketName"]
        listing = s3.list_objects_v2(Bucket=bucket, Prefix="scored/")
        seen["keys"] = sorted(o["Key"] for o in listing.get("Contents", []))
        seen["outputs"] = {
            p.name: s3.get_object(Bucket=bucket, Key=f"scored/batch-1/{p.name}.out.csv")["Body"].read().decode()
            for p in files
        }
        seen["odd"] = s3.get_object(Bucket=bucket, Key=f"scored/batch-1/{odd}.out.csv")["Body"].read().decode()

    described = workflow_run.run_workflow(
        "ScoreWorkflow", template=template, puts=puts, payload='{"prefix": "incoming/batch-1/"}',
        timeout=600, work=work / "run", inspect=inspect)
    assert described["status"] == "SUCCEEDED", described
    result = json.loads(described["output"])
    assert result["prefix"] == "incoming/batch-1/"
    entries = sorted(result["files"], key=lambda e: e["input"])
    assert [e["status"] for e in entries] == ["scored"] * 4, entries
    assert [e["rows_scored"] for e in entries] == [ROWS_PER_FILE] * 4
    assert any(e["input"].endswith(f"/incoming/batch-1/{odd}") for e in entries), entries
    assert f"scored/batch-1/{odd}.out.csv" in seen["keys"]
    assert f"scored/batch-1/{odd}.manifest.json" in seen["keys"]
    assert seen["odd"] == seen["outputs"][odd_path.name], "the same rows, the same scores"
    assert all(e["manifest"].endswith(".manifest.json") and "/scored/batch-1/" in e["manifest"] for e in entries)
    assert not any("batch-2" in k for k in seen["keys"])
    for path, rows in files.items():
        scored = list(csv.DictReader(io.StringIO(seen["outputs"][path.name])))
        assert len(scored) == len(rows)
        right = sum(s["label"] == r["label"] for s, r in zip(scored, rows))
        assert right >= 0.8 * len(rows), f"{path.name}: {right} of {len(rows)} right"
