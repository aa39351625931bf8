"""What moto's Step Functions interpreter runs, with its Lambda calls answered by a real function
under `cargo lambda watch --concurrency 2` (`make test-workflows-engine`).

The function is the probe fixture (infra/workflows/probe-fn): it echoes its event, sleeps, and
fails on demand, counting attempts per key in files, so Retry is observable from outside.
Every state machine here uses the constructs TrainWorkflow and ScoreWorkflow need: an
`arn:aws:states:::lambda:invoke` Task with a function *name*, Retry and Catch on it, and a
Distributed Map (ProcessorConfig Mode DISTRIBUTED) whose ItemReader reads S3, both a JSON list
(s3:getObject) and a listing (s3:listObjectsV2), with MaxConcurrency.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

import deploy
import harness
import run as workflow_run

FUNCTION = "wf-probe"
BUCKET = "workflow-engine-test"
RETRY = [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 1, "BackoffRate": 1.0, "MaxAttempts": 2}]
# Longest an execution here may take.
EXECUTION_TIMEOUT_SECONDS = 90


@pytest.fixture(scope="module")
def state_dir(work: Path) -> Path:
    path = work / "probe-state"
    path.mkdir()
    return path


@pytest.fixture(scope="module")
def engine(work: Path, state_dir: Path):
    """The emulator serving the probe function, and moto with its Lambda calls sent there."""
    harness.build_probe_fn(work)
    emulator, emulator_url = harness.start_emulator(work, {"PROBE_STATE_DIR": str(state_dir)})
    try:
        moto, endpoint = harness.start_moto(work, lambda_emulator=emulator_url,
                                            function_map=work / "functions.json")
        try:
            client = deploy.clients(endpoint)
            client("s3").create_bucket(Bucket=BUCKET)
            role = client("iam").create_role(
                RoleName="workflow-engine-test", AssumeRolePolicyDocument=json.dumps({
                    "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                            "Principal": {"Service": "states.amazonaws.com"}}]}),
            )["Role"]["Arn"]
            yield {"client": client, "role": role, "emulator": emulator, "moto": moto,
                   "endpoint": endpoint, "work": work}
        finally:
            moto.stop()
    finally:
        emulator.stop()


def key() -> str:
    return "k" + uuid.uuid4().hex[:12]


def attempts(state_dir: Path, k: str) -> int:
    path = state_dir / f"{k}.attempts"
    return len(path.read_text().splitlines()) if path.exists() else 0


def invoke_task(payload: Any, **extra: Any) -> dict[str, Any]:
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": FUNCTION, **payload},
        "OutputPath": "$.Payload",
        **extra,
    }


def run(engine: dict[str, Any], definition: dict[str, Any], payload: Any = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Creates the state machine, runs it to its end; returns describe_execution and the history."""
    sfn = engine["client"]("stepfunctions")
    arn = sfn.create_state_machine(name="sm-" + uuid.uuid4().hex[:10], definition=json.dumps(definition),
                                   roleArn=engine["role"])["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=arn, name=uuid.uuid4().hex, input=json.dumps(payload or {}))["executionArn"]
    deadline = time.monotonic() + EXECUTION_TIMEOUT_SECONDS
    while True:
        described = sfn.describe_execution(executionArn=execution)
        if described["status"] != "RUNNING":
            break
        assert time.monotonic() < deadline, f"execution still RUNNING after {EXECUTION_TIMEOUT_SECONDS} s"
        time.sleep(0.1)
    history = sfn.get_execution_history(executionArn=execution, maxResults=1000)["events"]
    return described, history


def output(described: dict[str, Any]) -> Any:
    assert described["status"] == "SUCCEEDED", described
    return json.loads(described["output"])


def test_lambda_invoke_task_runs_the_function_under_the_emulator(engine):
    described, _ = run(engine, {"StartAt": "Work", "States": {
        "Work": invoke_task({"Payload": {"hello.$": "$.who"}}, End=True)}}, {"who": "world"})
    out = output(described)
    assert out["echo"] == {"hello": "world"}
    # A real process answered (moto's own Lambda would need Docker and a registry).
    assert isinstance(out["pid"], int) and out["pid"] > 1


def test_a_function_arn_reaches_the_function_by_name(engine):
    arn = f"arn:aws:lambda:us-east-1:123456789012:function:{FUNCTION}"
    described, _ = run(engine, {"StartAt": "Work", "States": {"Work": {
        "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": arn, "Payload": {"x": 1}}, "OutputPath": "$.Payload", "End": True}}})
    assert output(described)["echo"] == {"x": 1}


def test_retry_runs_a_failed_task_again(engine, state_dir):
    k = key()
    described, history = run(engine, {"StartAt": "Work", "States": {
        "Work": invoke_task({"Payload": {"key": k, "fail_first": 2}}, Retry=RETRY, End=True)}})
    assert output(described)["attempt"] == 3
    assert attempts(state_dir, k) == 3
    assert sum(e["type"] == "TaskFailed" for e in history) == 2


def test_a_task_that_keeps_failing_fails_the_execution_naming_it(engine, state_dir):
    k = key()
    described, history = run(engine, {"StartAt": "Plan", "States": {
        "Plan": {"Type": "Pass", "Next": "Refit"},
        "Refit": invoke_task({"Payload": {"key": k, "fail": True}}, Retry=RETRY, Next="Publish"),
        "Publish": {"Type": "Pass", "End": True}}})
    assert described["status"] == "FAILED"
    assert attempts(state_dir, k) == 3, "the first attempt and two retries"
    failed = [e for e in history if e["type"] == "TaskFailed"]
    assert len(failed) == 3
    assert "wf-probe: asked to fail" in failed[-1]["taskFailedEventDetails"]["cause"]
    entered = [e["stateEnteredEventDetails"]["name"] for e in history if e["type"].endswith("StateEntered")]
    assert entered == ["Plan", "Refit"], "nothing after the failed task ran"
    assert "wf-probe: asked to fail" in described.get("cause", "")


def test_catch_routes_a_failure_to_its_handler(engine, state_dir):
    k = key()
    described, _ = run(engine, {"StartAt": "Work", "States": {
        "Work": invoke_task({"Payload": {"key": k, "fail": True}},
                            Catch=[{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Caught"}],
                            End=True),
        "Caught": {"Type": "Pass", "End": True}}}, {"job": 7})
    out = output(described)
    assert out["job"] == 7 and "wf-probe: asked to fail" in out["error"]["Cause"]
    assert attempts(state_dir, k) == 1


def distributed_map(reader: dict[str, Any], payload: dict[str, Any], concurrency: int,
                    **task: Any) -> dict[str, Any]:
    return {"StartAt": "Fan", "States": {"Fan": {
        "Type": "Map", "MaxConcurrency": concurrency, "ItemReader": reader,
        "ItemProcessor": {
            "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
            "StartAt": "Work", "States": {"Work": invoke_task({"Payload": payload}, End=True, **task)},
        },
        "End": True}}}


def most_at_once(results: list[dict[str, Any]]) -> int:
    """The most invocations that were running at one time, from their start and end times."""
    edges = sorted([(r["started_ms"], 1) for r in results] + [(r["ended_ms"], -1) for r in results],
                   key=lambda e: (e[0], e[1]))
    now = peak = 0
    for _, step in edges:
        now += step
        peak = max(peak, now)
    return peak


@pytest.mark.parametrize("concurrency", [1, 2])
def test_distributed_map_over_a_json_list_in_s3(engine, concurrency):
    items = [{"task": i, "fold": i % 3} for i in range(6)]
    list_key = f"plans/{uuid.uuid4().hex}/tasks.json"
    engine["client"]("s3").put_object(Bucket=BUCKET, Key=list_key, Body=json.dumps(items).encode())
    reader = {"Resource": "arn:aws:states:::s3:getObject", "ReaderConfig": {"InputType": "JSON"},
              "Parameters": {"Bucket": BUCKET, "Key": list_key}}
    described, _ = run(engine, distributed_map(
        reader, {"task.$": "$.task", "fold.$": "$.fold", "sleep_ms": 300}, concurrency))
    results = output(described)
    assert [r["echo"]["task"] for r in results] == list(range(6)), "one result per item, in order"
    assert [r["echo"]["fold"] for r in results] == [i % 3 for i in range(6)]
    # MaxConcurrency is honoured, and with 2 the emulator's two workers do run side by side.
    assert most_at_once(results) == concurrency


def test_distributed_map_over_an_s3_listing(engine):
    prefix = f"incoming/{uuid.uuid4().hex}/"
    s3 = engine["client"]("s3")
    keys = [f"{prefix}part-{i}.csv" for i in range(4)]
    for k in keys:
        s3.put_object(Bucket=BUCKET, Key=k, Body=b"a,b\n1,2\n")
    s3.put_object(Bucket=BUCKET, Key="elsewhere/part-9.csv", Body=b"a\n")
    reader = {"Resource": "arn:aws:states:::s3:listObjectsV2", "Parameters": {"Bucket": BUCKET, "Prefix": prefix}}
    described, _ = run(engine, distributed_map(reader, {"file.$": "$.Key", "size.$": "$.Size"}, 2))
    results = output(described)
    assert sorted(r["echo"]["file"] for r in results) == keys
    assert all(r["echo"]["size"] == 8 for r in results)


def test_distributed_map_with_item_selector_from_the_input(engine):
    """ScoreWorkflow's shape: bucket and prefix from the execution's input, each item built by
    an ItemSelector from the input and the listed object ($$.Map.Item.Value)."""
    prefix = f"batch/{uuid.uuid4().hex}/"
    s3 = engine["client"]("s3")
    keys = [f"{prefix}f{i}.csv" for i in range(3)]
    for k in keys:
        s3.put_object(Bucket=BUCKET, Key=k, Body=b"a\n1\n")
    reader = {"Resource": "arn:aws:states:::s3:listObjectsV2",
              "Parameters": {"Bucket.$": "$.bucket", "Prefix.$": "$.prefix"}}
    definition = distributed_map(reader, {"Records": [{"s3": {
        "bucket": {"name.$": "$.bucket"}, "object": {"key.$": "$.key"}}}]}, 2)
    definition["States"]["Fan"]["ItemSelector"] = {"bucket.$": "$.bucket", "key.$": "$$.Map.Item.Value.Key"}
    described, _ = run(engine, definition, {"bucket": BUCKET, "prefix": prefix})
    records = [r["echo"]["Records"][0]["s3"] for r in output(described)]
    assert sorted(r["object"]["key"] for r in records) == keys
    assert {r["bucket"]["name"] for r in records} == {BUCKET}


def test_distributed_map_retries_and_catches_per_item(engine, state_dir):
    keys = [key() for _ in range(4)]
    items = [{"key": k, "fail_first": 1, "fail": i == 3} for i, k in enumerate(keys)]
    list_key = f"plans/{uuid.uuid4().hex}/flaky.json"
    engine["client"]("s3").put_object(Bucket=BUCKET, Key=list_key, Body=json.dumps(items).encode())
    reader = {"Resource": "arn:aws:states:::s3:getObject", "ReaderConfig": {"InputType": "JSON"},
              "Parameters": {"Bucket": BUCKET, "Key": list_key}}
    definition = distributed_map(
        reader, {"key.$": "$.key", "fail_first.$": "$.fail_first", "fail.$": "$.fail"}, 2,
        Retry=RETRY, Catch=[{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Gave up"}])
    definition["States"]["Fan"]["ItemProcessor"]["States"]["Gave up"] = {"Type": "Pass", "End": True}
    described, _ = run(engine, definition)
    results = output(described)
    assert [r.get("attempt") for r in results[:3]] == [2, 2, 2]
    assert "wf-probe: asked to fail" in results[3]["error"]["Cause"]
    assert [attempts(state_dir, k) for k in keys] == [2, 2, 2, 3]


def failing_map(engine: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A Distributed Map over three items whose second always fails, then Publish."""
    keys = [key() for _ in range(3)]
    items = [{"key": k, "fail": i == 1} for i, k in enumerate(keys)]
    list_key = f"plans/{uuid.uuid4().hex}/bad.json"
    engine["client"]("s3").put_object(Bucket=BUCKET, Key=list_key, Body=json.dumps(items).encode())
    reader = {"Resource": "arn:aws:states:::s3:getObject", "ReaderConfig": {"InputType": "JSON"},
              "Parameters": {"Bucket": BUCKET, "Key": list_key}}
    definition = distributed_map(reader, {"key.$": "$.key", "fail.$": "$.fail"}, 2)
    del definition["States"]["Fan"]["End"]
    definition["States"]["Fan"]["Next"] = "Publish"
    definition["States"]["Publish"] = {"Type": "Pass", "End": True}
    return definition, keys


def test_moto_turns_a_failed_iteration_into_null(engine, state_dir):
    """moto 5.2.5's gap, pinned: on AWS this Map fails (ToleratedFailureCount defaults to 0);
    moto ignores the tolerance, writes null for the failed item and goes on. If this test fails,
    moto has fixed it: then the finishing task's check below becomes belt and braces only."""
    definition, keys = failing_map(engine)
    described, history = run(engine, definition)
    assert described["status"] == "SUCCEEDED"
    results = json.loads(described["output"])
    assert results[1] is None and results[0]["echo"]["key"] == keys[0]
    assert attempts(state_dir, keys[1]) == 1


def test_a_finishing_task_that_checks_every_result_fails_the_execution(engine):
    """The workaround, equivalent on AWS (where the Map fails first): the finishing task gets
    the Map's results and refuses a missing one; nothing after it (publishing) runs."""
    definition, _ = failing_map(engine)
    definition["States"]["Fan"]["ResultPath"] = "$.results"
    definition["States"]["Fan"]["Next"] = "Finish"
    definition["States"]["Finish"] = invoke_task({"Payload": {"require_results.$": "$.results"}},
                                                 Next="Publish")
    described, history = run(engine, definition)
    assert described["status"] == "FAILED", described
    assert "result 1 of 3 is missing" in described.get("cause", "")
    entered = [e["stateEnteredEventDetails"]["name"] for e in history if e["type"].endswith("StateEntered")]
    assert entered == ["Fan", "Finish"], "Publish must not run"


def test_an_integer_tolerated_failure_percentage_is_refused_by_moto(engine):
    """moto 5.2.5's ASL parser takes ToleratedFailurePercentage only as a decimal (0.0); AWS
    takes any number 0..100. State machines here write it as a decimal, or leave it out."""
    definition, _ = failing_map(engine)
    definition["States"]["Fan"]["ToleratedFailurePercentage"] = 0
    with pytest.raises(Exception, match="ToleratedFailurePercentage"):
        run(engine, definition)


# A stack with a function and a SAM state machine that calls it, the way TrainWorkflow and
# ScoreWorkflow will be declared in infra/template.yaml.
WORKFLOW_TEMPLATE = {
    "AWSTemplateFormatVersion": "2010-09-09",
    "Transform": "AWS::Serverless-2016-10-31",
    "Resources": {
        "Data": {"Type": "AWS::S3::Bucket"},
        "ProbeFunction": {
            "Type": "AWS::Serverless::Function",
            "Metadata": {"BuildMethod": "rust-cargolambda", "BuildProperties": {"Binary": FUNCTION}},
            "Properties": {"CodeUri": ".", "Handler": "bootstrap", "Runtime": "provided.al2023",
                           "Environment": {"Variables": {"PROBE_TAG": {"Fn::Sub": "data=${Data}"}}}},
        },
        "Workflow": {
            "Type": "AWS::Serverless::StateMachine",
            "Properties": {
                "Definition": {"StartAt": "Fan", "States": {"Fan": {
                    "Type": "Map", "MaxConcurrencyPath": "$.maxConcurrency",
                    "ItemReader": {"Resource": "arn:aws:states:::s3:listObjectsV2",
                                   "Parameters": {"Bucket": "${Bucket}", "Prefix.$": "$.prefix"}},
                    "ItemProcessor": {
                        "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                        "StartAt": "Work", "States": {"Work": {
                            "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                            "Parameters": {"FunctionName": "${Function}", "Payload": {"file.$": "$.Key"}},
                            "OutputPath": "$.Payload", "Retry": RETRY, "End": True}}},
                    "End": True}}},
                "DefinitionSubstitutions": {"Function": {"Ref": "ProbeFunction"}, "Bucket": {"Ref": "Data"}},
                "Policies": [{"LambdaInvokePolicy": {"FunctionName": {"Ref": "ProbeFunction"}}},
                             {"S3ReadPolicy": {"BucketName": {"Ref": "Data"}}}],
                "Events": {"Nightly": {"Type": "ScheduleV2", "Properties": {
                    "ScheduleExpression": "rate(1 day)", "State": "DISABLED",
                    "Input": '{"prefix": "in/", "maxConcurrency": 2}'}}},
            },
        },
    },
    "Outputs": {"WorkflowArn": {"Value": {"Ref": "Workflow"}}, "DataBucket": {"Value": {"Ref": "Data"}}},
}


def test_a_deployed_state_machine_runs_its_functions_under_the_emulator(engine):
    """Template -> aws-sam-translator -> moto -> StartExecution: the function the stack names
    (a generated name) is run by the emulator (its binary name), through --function-map."""
    work: Path = engine["work"]
    template = work / "workflow-template.json"
    template.write_text(json.dumps(WORKFLOW_TEMPLATE))
    deployment = deploy.deploy(engine["endpoint"], "wf-engine", {}, template_path=template)
    names = deploy.emulator_names(deployment, template)
    assert list(names.values()) == [FUNCTION] and list(names) != [FUNCTION]
    (work / "functions.json").write_text(json.dumps(names))

    s3 = engine["client"]("s3")
    bucket = deployment.physical["Data"]
    for i in range(3):
        s3.put_object(Bucket=bucket, Key=f"in/f{i}.csv", Body=b"a\n1\n")
    sfn = engine["client"]("stepfunctions")
    arn = deployment.outputs["WorkflowArn"]
    definition = json.loads(sfn.describe_state_machine(stateMachineArn=arn)["definition"])
    work_state = definition["States"]["Fan"]["ItemProcessor"]["States"]["Work"]
    assert work_state["Parameters"]["FunctionName"] in names, "a function name, not an ARN"

    execution = sfn.start_execution(stateMachineArn=arn, name=uuid.uuid4().hex, input=json.dumps(
        {"prefix": "in/", "maxConcurrency": 2}))["executionArn"]
    deadline = time.monotonic() + EXECUTION_TIMEOUT_SECONDS
    while (described := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    results = output(described)
    assert sorted(r["echo"]["file"] for r in results) == [f"in/f{i}.csv" for i in range(3)]
    assert most_at_once(results) <= 2
    # Served by the shared emulator: the stack's environment for the function is not applied.
    assert {r["tag"] for r in results} == {None}

    # SAM's ScheduleV2 event: an EventBridge Scheduler schedule (created by deploy.py, which moto's
    # CloudFormation does not model) that starts this state machine, with a role allowed to.
    schedules = engine["client"]("scheduler").list_schedules()["Schedules"]
    [schedule] = [x for x in schedules if x["Target"]["Arn"] == arn]
    detail = engine["client"]("scheduler").get_schedule(Name=schedule["Name"])
    assert detail["State"] == "DISABLED" and detail["ScheduleExpression"] == "rate(1 day)"
    role = detail["Target"]["RoleArn"].rsplit("/", 1)[1]
    iam = engine["client"]("iam")
    [policy] = iam.list_role_policies(RoleName=role)["PolicyNames"]
    doc = iam.get_role_policy(RoleName=role, PolicyName=policy)["PolicyDocument"]
    text = json.dumps(doc) if not isinstance(doc, str) else doc
    assert "states:StartExecution" in text and arn in text

    # One emulator per deployed function, started with the environment the stack gave it.
    [deployed] = names
    emulators = harness.start_function_emulators(
        work, engine["endpoint"], {deployed: {"name": FUNCTION}}, work / "functions.json",
        extra_env={"PROBE_STATE_DIR": str(work / "probe-state")})
    try:
        execution = sfn.start_execution(stateMachineArn=arn, name=uuid.uuid4().hex, input=json.dumps(
            {"prefix": "in/", "maxConcurrency": 2}))["executionArn"]
        while (described := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
            assert time.monotonic() < deadline + EXECUTION_TIMEOUT_SECONDS
            time.sleep(0.1)
        assert {r["tag"] for r in output(described)} == {f"data={bucket}"}
    finally:
        for emulator in emulators:
            emulator.stop()


def test_a_substituted_number_in_an_object_definition_does_not_deploy(engine):
    """`"MaxConcurrency": "${MaxConcurrency}"` in SAM's object `Definition` becomes the string
    "2" after substitution: cfn-lint accepts it, Step Functions (and moto's parser) refuse it.
    A template parameter for MaxConcurrency needs `DefinitionString` (unquoted `${...}`) or
    `MaxConcurrencyPath` from the execution's input."""
    template = json.loads(json.dumps(WORKFLOW_TEMPLATE))
    fan = template["Resources"]["Workflow"]["Properties"]["Definition"]["States"]["Fan"]
    del fan["MaxConcurrencyPath"]
    fan["MaxConcurrency"] = "${MaxConcurrency}"
    template["Parameters"] = {"MaxConcurrency": {"Type": "Number", "Default": 2}}
    template["Resources"]["Workflow"]["Properties"]["DefinitionSubstitutions"]["MaxConcurrency"] = {
        "Ref": "MaxConcurrency"}
    path = engine["work"] / "quoted-template.json"
    path.write_text(json.dumps(template))
    with pytest.raises(deploy.DeployError, match=r"Workflow \(AWS::StepFunctions::StateMachine\).*MaxConcurrency"):
        deploy.deploy(engine["endpoint"], "wf-quoted", {}, template_path=path)


def test_run_py_deploys_uploads_runs_and_stops(tmp_path):
    """run.py (make workflow-train / workflow-score): its own moto and emulators, files put in
    the stack's bucket, the execution's input filled from the outputs, everything stopped after."""
    template = tmp_path / "workflow-template.json"
    template.write_text(json.dumps(WORKFLOW_TEMPLATE))
    files = {}
    for i in range(2):
        local = tmp_path / f"f{i}.csv"
        local.write_text("a\n1\n")
        files[local] = f"in/f{i}.csv"
    described = workflow_run.run_workflow(
        "Workflow", template=template, puts=files, bucket_output="DataBucket",
        payload='{"prefix": "in/", "maxConcurrency": 2, "bucket": "{DataBucket}"}',
        crate=harness.PROBE_FN, target=harness.PROBE_TARGET, timeout=EXECUTION_TIMEOUT_SECONDS,
        work=tmp_path)
    results = output(described)
    assert sorted(r["echo"]["file"] for r in results) == sorted(files.values())
    [tag] = {r["tag"] for r in results}
    assert tag.startswith("data=") and json.loads(described["input"])["bucket"] == tag[len("data="):]
    for log in ("moto.log", "watch-wf-probe.log"):
        assert (tmp_path / log).exists()
