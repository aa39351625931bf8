"""The retraining triggers (train-triggers.yaml, merged into a copy of the template with a
stand-in TrainWorkflow): off by default; on, a schedule and an S3 rule that start TrainWorkflow
with a role allowed that only. moto fires neither schedules nor rules into Step Functions (its
EventBridge targets are logs, archives and SQS), so the rule's pattern is checked by routing it to
an SQS queue as well and dropping objects in and out of the prefix (part of
`make test-workflows-deploy`)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

import deploy
from fragments import merged_template
from test_deploy import statements

CIDR = "203.0.113.7/32"


@pytest.fixture(scope="module")
def template(work: Path) -> Path:
    return merged_template(work / "template-with-triggers.json", "train-triggers.yaml")


@pytest.fixture(scope="module")
def off(moto: str, template: Path) -> deploy.Deployment:
    return deploy.deploy(moto, "digits-off", {"AllowedCidr": CIDR}, template_path=template)


@pytest.fixture(scope="module")
def on(moto: str, template: Path) -> deploy.Deployment:
    return deploy.deploy(moto, "digits-on", {
        "AllowedCidr": CIDR, "RetrainSchedule": "rate(1 day)", "RetrainDataPrefix": "data/",
        "RetrainInput": json.dumps({"data": "s3://bucket/data/digits.csv"}),
    # Objects are put below: moto would refuse them under the deny-non-TLS bucket policy
    # (it ignores the policy's Condition; see docs/workflows.md).
    }, template_path=template, leave_out_types=frozenset({"AWS::S3::BucketPolicy"}))


def test_triggers_are_off_by_default(off):
    for lid in ("RetrainRole", "RetrainScheduleResource", "RetrainOnDataRule"):
        assert lid not in off.physical, f"{lid} created with the triggers off"
    assert "TrainWorkflow" in off.physical


def role_statements(client: Any, role_arn: str) -> list[dict[str, Any]]:
    iam, name = client("iam"), role_arn.rsplit("/", 1)[1]
    [policy] = iam.list_role_policies(RoleName=name)["PolicyNames"]
    return statements(iam.get_role_policy(RoleName=name, PolicyName=policy)["PolicyDocument"])


def test_schedule_starts_train_workflow_with_a_role_allowed_that_only(moto, on):
    client = deploy.clients(moto)
    train = on.physical["TrainWorkflow"]
    schedule = client("scheduler").get_schedule(Name=on.physical["RetrainScheduleResource"])
    assert schedule["State"] == "ENABLED" and schedule["ScheduleExpression"] == "rate(1 day)"
    assert schedule["Target"]["Arn"] == train
    assert json.loads(schedule["Target"]["Input"]) == {"data": "s3://bucket/data/digits.csv"}
    [stmt] = role_statements(client, schedule["Target"]["RoleArn"])
    assert (stmt["Effect"], stmt["Action"], stmt["Resource"]) == ("Allow", "states:StartExecution", train)
    trust = client("iam").get_role(RoleName=schedule["Target"]["RoleArn"].rsplit("/", 1)[1])
    principals = trust["Role"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["Service"]
    assert sorted(principals) == ["events.amazonaws.com", "scheduler.amazonaws.com"]


def test_data_rule_matches_objects_under_the_prefix_only(moto, on):
    client = deploy.clients(moto)
    events, s3, sqs = client("events"), client("s3"), client("sqs")
    rule = on.physical["RetrainOnDataRule"]
    bucket = on.outputs["ModelBucketName"]
    # (moto stores the bucket's EventBridgeConfiguration but does not return it; the events
    # below show it is on.)
    [target] = events.list_targets_by_rule(Rule=rule)["Targets"]
    assert target["Arn"] == on.physical["TrainWorkflow"] and target["RoleArn"].endswith(
        on.physical["RetrainRole"])
    pattern = json.loads(events.describe_rule(Name=rule)["EventPattern"])
    assert pattern == {"source": ["aws.s3"], "detail-type": ["Object Created"],
                       "detail": {"bucket": {"name": [bucket]}, "object": {"key": [{"prefix": "data/"}]}}}
    # The bucket sends its events to EventBridge, and the key-prefix part of that pattern picks
    # the objects under the prefix only: shown on a rule of its own, routed to a queue. (moto
    # 5.2.5 fires no Step Functions target; a second target on the deployed rule gets nothing,
    # as a Step Functions target first in the list stops delivery; and the full pattern did not
    # match on this stack's bucket in moto although it does on a fresh bucket: see
    # docs/workflows.md.)
    queue = sqs.create_queue(QueueName="retrain-probe")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="retrain-probe", EventPattern=json.dumps(
        {"source": pattern["source"], "detail": {"object": pattern["detail"]["object"]}}))
    events.put_targets(Rule="retrain-probe", Targets=[{"Id": "probe", "Arn": queue_arn}])
    s3.put_object(Bucket=bucket, Key="data/new.csv", Body=b"a\n1\n")
    s3.put_object(Bucket=bucket, Key="models/digits/latest", Body=b"{}")
    keys, deadline = [], time.monotonic() + 10
    while time.monotonic() < deadline and not keys:
        for message in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10,
                                           WaitTimeSeconds=1).get("Messages", []):
            keys.append(json.loads(message["Body"])["detail"]["object"]["key"])
    time.sleep(1)
    for message in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
        keys.append(json.loads(message["Body"])["detail"]["object"]["key"])
    assert set(keys) == {"data/new.csv"}
