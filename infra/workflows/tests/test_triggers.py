"""The retraining triggers of infra/template.yaml: off by default; on, a schedule and an S3 rule
that start TrainWorkflow, with a role allowed that only. moto fires neither schedules nor Step
Functions targets of rules (its EventBridge targets are logs, archives, buses and SQS), so the
rule's pattern and input transformer are checked by routing them to an SQS queue as well and
dropping objects in and out of the data prefix (part of `make test-workflows-deploy`)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

import deploy
from test_deploy import statements

CIDR = "203.0.113.7/32"
TRIGGERS = ("RetrainRole", "RetrainScheduleResource", "RetrainOnDataRule")


@pytest.fixture(scope="module")
def client(moto: str):
    return deploy.clients(moto)


@pytest.fixture(scope="module")
def off(moto: str) -> deploy.Deployment:
    return deploy.deploy(moto, "digits-off", {"AllowedCidr": CIDR})


@pytest.fixture(scope="module")
def schedule_only(moto: str) -> deploy.Deployment:
    return deploy.deploy(moto, "digits-sched", {"AllowedCidr": CIDR, "RetrainSchedule": "cron(0 3 * * ? *)"})


@pytest.fixture(scope="module")
def on(moto: str) -> deploy.Deployment:
    """Both triggers, and prefixes and a name other than the defaults, so that each value in
    the triggers is seen to come from its parameter."""
    return deploy.deploy(moto, "digits-on", {
        "AllowedCidr": CIDR, "RetrainSchedule": "rate(1 day)", "RetrainOnNewData": "true",
        "RetrainScheduleData": "training/digits.csv", "TrainDataPrefix": "training",
        "ModelPrefix": "prod-models", "ModelName": "digits2",
    # Objects are put below: moto would refuse them under the deny-non-TLS bucket policy
    # (it ignores the policy's Condition; see docs/workflows.md).
    }, leave_out_types=frozenset({"AWS::S3::BucketPolicy"}))


def targets_of(client: Any, arn: str) -> list[str]:
    """Every rule and schedule in moto that targets `arn`."""
    events, found = client("events"), []
    for rule in events.list_rules()["Rules"]:
        found += [rule["Name"] for t in events.list_targets_by_rule(Rule=rule["Name"])["Targets"] if t["Arn"] == arn]
    scheduler = client("scheduler")
    for entry in scheduler.list_schedules()["Schedules"]:
        if scheduler.get_schedule(Name=entry["Name"])["Target"]["Arn"] == arn:
            found.append(entry["Name"])
    return found


def test_triggers_are_off_by_default(client, off):
    for lid in TRIGGERS:
        assert lid not in off.physical, f"{lid} created with the triggers off"
    train = off.outputs["TrainWorkflowArn"]
    assert off.physical["TrainWorkflow"] == train
    assert targets_of(client, train) == [], "nothing starts TrainWorkflow by default"


def test_one_trigger_on_creates_that_one_and_the_role(schedule_only):
    assert "RetrainScheduleResource" in schedule_only.physical and "RetrainRole" in schedule_only.physical
    assert "RetrainOnDataRule" not in schedule_only.physical, "RetrainOnNewData is false by default"


def single_statement(client: Any, role_arn: str) -> dict[str, Any]:
    iam, name = client("iam"), role_arn.rsplit("/", 1)[1]
    [policy] = iam.list_role_policies(RoleName=name)["PolicyNames"]
    [stmt] = statements(iam.get_role_policy(RoleName=name, PolicyName=policy)["PolicyDocument"])
    return stmt


def test_schedule_starts_train_workflow_with_a_role_allowed_that_only(client, on):
    train, bucket = on.outputs["TrainWorkflowArn"], on.outputs["ModelBucketName"]
    schedule = client("scheduler").get_schedule(Name=on.physical["RetrainScheduleResource"])
    assert schedule["State"] == "ENABLED" and schedule["ScheduleExpression"] == "rate(1 day)"
    assert schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}
    assert schedule["Target"]["Arn"] == train
    assert json.loads(schedule["Target"]["Input"]) == {
        "data": f"s3://{bucket}/training/digits.csv", "store": f"s3://{bucket}/prod-models", "name": "digits2",
    }, "the state machine's input: RetrainScheduleData, the stack's store, ModelName"
    assert schedule["Target"]["RoleArn"].rsplit("/", 1)[1] == on.physical["RetrainRole"]
    stmt = single_statement(client, schedule["Target"]["RoleArn"])
    assert (stmt["Effect"], stmt["Action"], stmt["Resource"]) == ("Allow", "states:StartExecution", train)
    trust = client("iam").get_role(RoleName=on.physical["RetrainRole"])
    [assume] = statements(trust["Role"]["AssumeRolePolicyDocument"])
    assert sorted(assume["Principal"]["Service"]) == ["events.amazonaws.com", "scheduler.amazonaws.com"]


def drain(sqs: Any, queue: str, settle: float = 1.0, timeout: float = 10.0) -> list[Any]:
    """Every message body on the queue: waits for the first, then `settle` seconds for more."""
    bodies: list[Any] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not bodies:
        for message in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10,
                                           WaitTimeSeconds=1).get("Messages", []):
            bodies.append(json.loads(message["Body"]))
    time.sleep(settle)
    for message in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
        bodies.append(json.loads(message["Body"]))
    return bodies


def test_data_rule_starts_train_workflow_on_the_new_object_only(client, on):
    events, s3, sqs = client("events"), client("s3"), client("sqs")
    rule, train = on.physical["RetrainOnDataRule"], on.outputs["TrainWorkflowArn"]
    bucket = on.outputs["ModelBucketName"]
    # (moto stores the bucket's EventBridgeConfiguration but does not return it; the events
    # below show it is on.)
    pattern = json.loads(events.describe_rule(Name=rule)["EventPattern"])
    assert pattern == {"source": ["aws.s3"], "detail-type": ["Object Created"],
                       "detail": {"bucket": {"name": [bucket]}, "object": {"key": [{"prefix": "training/"}]}}}
    [target] = events.list_targets_by_rule(Rule=rule)["Targets"]
    assert target["Arn"] == train and target["RoleArn"].rsplit("/", 1)[1] == on.physical["RetrainRole"]
    assert single_statement(client, target["RoleArn"])["Resource"] == train
    assert "Input" not in target and "InputPath" not in target
    transformer = target["InputTransformer"]
    assert transformer["InputPathsMap"] == {"bucket": "$.detail.bucket.name", "key": "$.detail.object.key"}

    # The deployed rule, its target swapped for an SQS queue with the same input transformer.
    # moto 5.2.5 delivers no event to a Step Functions target: it raises, and since it sends S3's
    # events to the rules one after another under one try, the rules after that one get nothing
    # either. Kept, the target would also stop a probe rule of our own.
    queue = sqs.create_queue(QueueName="retrain-probe")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.remove_targets(Rule=rule, Ids=[target["Id"]])
    events.put_targets(Rule=rule, Targets=[{"Id": "probe", "Arn": queue_arn, "InputTransformer": transformer}])

    # The bucket's events reach EventBridge, and the full pattern picks only objects created
    # under the data prefix: not the store's (published versions, staged rows), not a sibling
    # prefix sharing its first letters, and no other kind of event (moto's PutObject also
    # sends "Object Tags Added").
    s3.put_object(Bucket=bucket, Key="training/new.csv", Body=b"a\n1\n")
    s3.put_object(Bucket=bucket, Key="prod-models/digits2/latest", Body=b"{}")
    s3.put_object(Bucket=bucket, Key="prod-models/_staging/0123456789abcdef/rows.bin", Body=b"x")
    s3.put_object(Bucket=bucket, Key="trainingset/other.csv", Body=b"a\n1\n")
    [event] = drain(sqs, queue)
    assert (event["detail-type"], event["detail"]["object"]["key"]) == ("Object Created", "training/new.csv")

    # moto applies a target's input transformer to PutEvents only (S3's events reach the target
    # as they are), so the same event is sent again that way: the transformer turns it into
    # TrainWorkflow's input.
    sent = events.put_events(Entries=[{
        "Source": event["source"], "DetailType": event["detail-type"], "Resources": event["resources"],
        "Detail": json.dumps(event["detail"]),
    }])
    assert sent["FailedEntryCount"] == 0, sent
    assert drain(sqs, queue) == [{
        "data": f"s3://{bucket}/training/new.csv", "store": f"s3://{bucket}/prod-models", "name": "digits2",
    }]
