"""infra/template.yaml, translated by aws-sam-translator and deployed to moto's CloudFormation:
the resources and outputs that docs/deploy.md relies on (`make test-workflows-deploy`)."""

from __future__ import annotations

import ast
import base64
import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

import deploy

CIDR = "203.0.113.7/32"
API_KEYS = "/digits/predict/api-keys"
# What docs/deploy.md tells a user to read from the stack.
DOC_OUTPUTS = {
    "LambdaPredictUrl", "InstancePredictUrl", "ModelUri", "TrainerStore", "RepositoryUri",
    "InstanceId", "ModelBucketName", "FunctionUrl", "ScoreWorkflowArn", "TrainWorkflowArn",
    "TrainCoordinatorFunctionName",
}
# The errors TrainWorkflow retries (transient); the contract's `Refused` must never be among them.
TRANSIENT = ["Failed", "Lambda.ServiceException", "Lambda.AWSLambdaException",
             "Lambda.SdkClientException", "Lambda.TooManyRequestsException"]


@pytest.fixture(scope="module")
def client(moto: str):
    return deploy.clients(moto)


@pytest.fixture(scope="module")
def default(moto: str) -> deploy.Deployment:
    """The stack with every parameter at its default (AllowedCidr has none)."""
    return deploy.deploy(moto, "digits", {"AllowedCidr": CIDR})


@pytest.fixture(scope="module")
def public(moto: str) -> deploy.Deployment:
    """The other branch of every condition: a public function URL and API keys."""
    return deploy.deploy(moto, "digits-public", {
        "AllowedCidr": CIDR, "FunctionUrlAuthType": "NONE", "ApiKeysParameter": API_KEYS,
        "ModelPrefix": "prod-models", "ModelName": "digits2", "ReservedConcurrency": "3",
        "TrainDataPrefix": "training", "TrainMaxConcurrency": "3",
    })


def resource_ids(client: Any, deployment: deploy.Deployment) -> dict[str, str]:
    name = deployment.stack["StackName"]
    ids = {
        # moto gives an AWS::Lambda::Permission no physical id; the tests check its policy.
        r["LogicalResourceId"]: r.get("PhysicalResourceId", r["ResourceStatus"])
        for r in client("cloudformation").describe_stack_resources(StackName=name)["StackResources"]
        if "LogicalResourceId" in r and r["ResourceStatus"] == "CREATE_COMPLETE"
    }
    return {**ids, **deployment.created_outside}


def statements(doc: Any) -> list[dict[str, Any]]:
    if isinstance(doc, str):
        try:
            doc = json.loads(doc)
        except json.JSONDecodeError:
            # moto 5.2.5 keeps the inline policies of a role created by CloudFormation as
            # Python's repr of the document, not JSON.
            doc = ast.literal_eval(doc)
    found = doc["Statement"]
    return found if isinstance(found, list) else [found]


def as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]


def role_statements(client: Any, role_name: str) -> dict[str, list[dict[str, Any]]]:
    """Inline policy name -> its statements."""
    iam = client("iam")
    return {
        name: statements(iam.get_role_policy(RoleName=role_name, PolicyName=name)["PolicyDocument"])
        for name in iam.list_role_policies(RoleName=role_name)["PolicyNames"]
    }


def s3_actions(stmts: list[dict[str, Any]]) -> list[tuple[str, str, Any]]:
    """(action, resource, condition) of every Allow statement that touches S3."""
    out = []
    for st in stmts:
        if st.get("Effect") != "Allow":
            continue
        for action in as_list(st["Action"]):
            if action.startswith("s3:") or action == "*":
                for resource in as_list(st["Resource"]):
                    out.append((action, resource, st.get("Condition")))
    return out


def expected_model_read(bucket: str, prefix: str) -> list[tuple[str, str, Any]]:
    return [
        ("s3:GetObject", f"arn:aws:s3:::{bucket}/{prefix}/*", None),
        ("s3:ListBucket", f"arn:aws:s3:::{bucket}", {"StringLike": {"s3:prefix": [f"{prefix}/*"]}}),
    ]


def test_every_resource_is_created(client, default, public):
    """moto skips types it does not model with only a warning; nothing may go missing here."""
    for deployment in (default, public):
        ids = resource_ids(client, deployment)
        conditions = deployment.translated.get("Conditions", {})
        values = {p["ParameterKey"]: p["ParameterValue"] for p in deployment.stack["Parameters"]}
        resolver = deploy.Resolver(deployment.translated, values, {}, None, "s", "us-east-1")
        for lid, resource in deployment.translated["Resources"].items():
            if "Condition" in resource and resource["Condition"] in conditions:
                if not resolver.condition(resource["Condition"]):
                    assert lid not in ids, f"{lid}: created although its condition is false"
                    continue
            assert ids.get(lid), f"{deployment.stack['StackName']}: {lid} ({resource['Type']}) not created"


def test_outputs_the_deploy_doc_names(default):
    out = default.outputs
    assert DOC_OUTPUTS <= set(out), f"missing outputs: {DOC_OUTPUTS - set(out)}"
    bucket = out["ModelBucketName"]
    assert out["TrainerStore"] == f"s3://{bucket}/models"
    assert out["ModelUri"] == f"s3://{bucket}/models/digits"
    assert out["FunctionUrl"].startswith("https://") and ".lambda-url.us-east-1.on.aws" in out["FunctionUrl"]
    # AWS's FunctionUrl ends with "/" (moto's does not), so the output is that URL + "predict".
    assert out["LambdaPredictUrl"] == out["FunctionUrl"] + "predict"
    assert out["InstancePredictUrl"].startswith("http://") and out["InstancePredictUrl"].endswith(":8000/predict")
    assert out["RepositoryUri"].endswith(".dkr.ecr.us-east-1.amazonaws.com/digits-repository")
    assert out["InstanceId"].startswith("i-")


def test_model_bucket_is_private_versioned_encrypted(client, default):
    s3, bucket = client("s3"), default.outputs["ModelBucketName"]
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert block == {"BlockPublicAcls": True, "IgnorePublicAcls": True,
                     "BlockPublicPolicy": True, "RestrictPublicBuckets": True}
    owner = s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"]
    assert owner == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    [deny] = statements(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    assert deny["Effect"] == "Deny" and deny["Action"] == "s3:*" and deny["Principal"] == "*"
    assert sorted(deny["Resource"]) == [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def predict_function(client: Any, deployment: deploy.Deployment) -> dict[str, Any]:
    name = resource_ids(client, deployment)["PredictFunction"]
    return client("lambda").get_function(FunctionName=name)["Configuration"]


def test_predict_function_configuration(client, default):
    fn = predict_function(client, default)
    assert fn["Runtime"] == "provided.al2023" and fn["Handler"] == "bootstrap"
    assert fn["Architectures"] == ["x86_64"]
    assert fn["MemorySize"] == 128 and fn["Timeout"] == 10
    assert fn["Environment"]["Variables"] == {"MODEL_URI": default.outputs["ModelUri"], "RUST_LOG": "info"}
    lam = client("lambda")
    assert lam.get_function_concurrency(FunctionName=fn["FunctionName"])["ReservedConcurrentExecutions"] == 10
    groups = client("logs").describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{fn['FunctionName']}")["logGroups"]
    assert [g.get("retentionInDays") for g in groups] == [14]
    # The package deploy.py uploaded (a placeholder: moto never runs it).
    assert default.packaged.code["PredictFunction"][3] == "placeholder"


def test_predict_role_reads_the_model_prefix_only(client, default):
    fn = predict_function(client, default)
    role_name = fn["Role"].rsplit("/", 1)[1]
    iam = client("iam")
    trust = statements(iam.get_role(RoleName=role_name)["Role"]["AssumeRolePolicyDocument"])
    assert [s["Principal"] for s in trust] == [{"Service": ["lambda.amazonaws.com"]}]
    attached = [p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"]]
    assert attached == ["arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"]
    stmts = [s for group in role_statements(client, role_name).values() for s in group]
    assert s3_actions(stmts) == expected_model_read(default.outputs["ModelBucketName"], "models")
    assert {a for s in stmts for a in as_list(s["Action"])} == {"s3:GetObject", "s3:ListBucket"}


def test_function_url_is_iam_only_by_default(client, default):
    lam, fn = client("lambda"), predict_function(client, default)
    url = lam.get_function_url_config(FunctionName=fn["FunctionName"])
    assert url["AuthType"] == "AWS_IAM"
    assert url["FunctionUrl"].rstrip("/") == default.outputs["FunctionUrl"].rstrip("/")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_policy(FunctionName=fn["FunctionName"])


def test_public_function_url_has_both_permissions(client, public):
    lam, fn = client("lambda"), predict_function(client, public)
    assert lam.get_function_url_config(FunctionName=fn["FunctionName"])["AuthType"] == "NONE"
    stmts = statements(lam.get_policy(FunctionName=fn["FunctionName"])["Policy"])
    by_action = {s["Action"]: s for s in stmts}
    assert set(by_action) == {"lambda:InvokeFunctionUrl", "lambda:InvokeFunction"}
    assert all(s["Principal"] == "*" and s["Effect"] == "Allow" for s in stmts)
    assert lam.get_function_concurrency(FunctionName=fn["FunctionName"])["ReservedConcurrentExecutions"] == 3
    assert fn["Environment"]["Variables"]["MODEL_URI"] == public.outputs["ModelUri"]
    assert public.outputs["ModelUri"].endswith("/prod-models/digits2")


def instance(client: Any, deployment: deploy.Deployment) -> dict[str, Any]:
    ec2 = client("ec2")
    [reservation] = ec2.describe_instances(InstanceIds=[deployment.outputs["InstanceId"]])["Reservations"]
    return reservation["Instances"][0]


def instance_role(client: Any, deployment: deploy.Deployment) -> str:
    profile_arn = instance(client, deployment)["IamInstanceProfile"]["Arn"]
    profile = client("iam").get_instance_profile(InstanceProfileName=profile_arn.rsplit("/", 1)[1])
    [role] = profile["InstanceProfile"]["Roles"]
    return role["RoleName"]


def test_instance_role_profile_and_network(client, default):
    role_name = instance_role(client, default)
    policies = role_statements(client, role_name)
    assert set(policies) == {"read-models", "pull-image"}, "no read-api-keys without ApiKeysParameter"
    assert s3_actions(policies["read-models"]) == expected_model_read(default.outputs["ModelBucketName"], "models")
    pull = {s["Sid"]: s for s in policies["pull-image"]}
    assert pull["EcrLogin"]["Resource"] == "*" and pull["EcrLogin"]["Action"] == "ecr:GetAuthorizationToken"
    assert pull["EcrPull"]["Resource"].endswith(":repository/digits-repository")
    ec2, inst = client("ec2"), instance(client, default)
    assert inst["InstanceType"] == "t3.micro"
    groups = [g["GroupId"] for g in inst["SecurityGroups"]]
    assert groups == [resource_ids(client, default)["InstanceSecurityGroup"]]
    [group] = ec2.describe_security_groups(GroupIds=groups)["SecurityGroups"]
    assert [(p["IpProtocol"], p["FromPort"], p["ToPort"], [r["CidrIp"] for r in p["IpRanges"]])
            for p in group["IpPermissions"]] == [("tcp", 8000, 8000, [CIDR])]
    lt_id = resource_ids(client, default)["InstanceLaunchTemplate"]
    [version] = ec2.describe_launch_template_versions(LaunchTemplateId=lt_id)["LaunchTemplateVersions"]
    meta = version["LaunchTemplateData"]["MetadataOptions"]
    assert meta["HttpTokens"] == "required" and int(meta["HttpPutResponseHopLimit"]) == 2


def user_data(client: Any, deployment: deploy.Deployment) -> str:
    attr = client("ec2").describe_instance_attribute(
        InstanceId=deployment.outputs["InstanceId"], Attribute="userData")
    return base64.b64decode(attr["UserData"]["Value"]).decode()


def test_user_data_is_the_script_behind_four_settings(client, default, public):
    script = (deploy.ROOT / "infra" / "ec2" / "user-data.sh").read_text()
    for deployment, keys in ((default, ""), (public, API_KEYS)):
        text = user_data(client, deployment)
        head, sep, rest = text.partition("#!/usr/bin/env bash\n")
        assert sep and rest == script.partition("#!/usr/bin/env bash\n")[2]
        out = deployment.outputs
        assert head == (
            "#!/bin/bash\n"
            f"export IMAGE_URI='{out['RepositoryUri']}:latest'\n"
            f"export MODEL_URI='{out['ModelUri']}'\n"
            "export AWS_REGION='us-east-1'\n"
            f"export API_KEYS_PARAMETER='{keys}'\n"
        )


def test_api_keys_parameter_grants_that_parameter_only(client, public):
    policies = role_statements(client, instance_role(client, public))
    assert set(policies) == {"read-models", "read-api-keys", "pull-image"}
    keys = {s["Sid"]: s for s in policies["read-api-keys"]}
    assert keys["ReadApiKeys"]["Action"] == "ssm:GetParameter"
    assert keys["ReadApiKeys"]["Resource"] == f"arn:aws:ssm:us-east-1:123456789012:parameter{API_KEYS}"
    assert keys["DecryptApiKeys"]["Condition"] == {"StringEquals": {"kms:ViaService": "ssm.us-east-1.amazonaws.com"}}
    assert s3_actions(policies["read-models"]) == expected_model_read(public.outputs["ModelBucketName"], "prod-models")


def test_a_template_that_lints_but_does_not_deploy_fails(moto):
    """Two roles with one explicit name: cfn-lint has no objection, CloudFormation (and moto)
    refuse the second; the deploy must fail naming the resource."""
    template = deploy.load_template()
    template["Resources"]["InstanceRole"]["Properties"]["RoleName"] = "digits-duplicate"
    twin = copy.deepcopy(template["Resources"]["InstanceRole"])
    template["Resources"]["TwinRole"] = twin
    path = Path(deploy.ROOT / "target" / "workflows" / "duplicate-role.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(template))
    with pytest.raises(deploy.DeployError, match=r"digits-duplicate|TwinRole|InstanceRole"):
        deploy.deploy(moto, "digits-broken", {"AllowedCidr": CIDR}, template_path=path)


def test_a_type_moto_cannot_create_is_never_skipped():
    template = {"Resources": {"Odd": {"Type": "AWS::Bedrock::Agent", "Properties": {}}}}
    with pytest.raises(deploy.DeployError, match=r"Odd \(AWS::Bedrock::Agent\)"):
        deploy.split_gaps(template)


def test_bad_template_errors_name_the_file_and_line(tmp_path):
    bad = tmp_path / "t.yaml"
    bad.write_text("Resources:\n  A:\n    Type: AWS::S3::Bucket\n    Properties:\n      X: !GetAtt Nodot\n")
    with pytest.raises(deploy.DeployError, match=r"t\.yaml.*line 5.*Nodot"):
        deploy.load_template(bad)


def test_every_function_role_is_scoped_to_prefixes_of_the_stack_bucket(client, default):
    """For every function of the stack (predict now; train-worker and score as they are added):
    no S3 wildcard action, and every S3 resource is the stack's bucket itself with a prefix
    condition, or objects under a prefix of it; its s3:// settings point into that bucket."""
    bucket = default.outputs["ModelBucketName"]
    lam, functions = client("lambda"), []
    for lid, resource in default.translated["Resources"].items():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        config = lam.get_function(FunctionName=default.physical[lid])["Configuration"]
        functions.append(lid)
        role = config["Role"].rsplit("/", 1)[1]
        for name, stmts in role_statements(client, role).items():
            for action, arn, condition in s3_actions(stmts):
                where = f"{lid}: policy {name}: {action} on {arn}"
                assert action != "*" and not action.endswith(":*"), where
                if arn == f"arn:aws:s3:::{bucket}":
                    prefixes = (condition or {}).get("StringLike", {}).get("s3:prefix")
                    assert prefixes and all(p.rstrip("*").strip("/") for p in prefixes), where
                else:
                    assert arn.startswith(f"arn:aws:s3:::{bucket}/") and arn != f"arn:aws:s3:::{bucket}/*", where
        for key, value in (config.get("Environment") or {}).get("Variables", {}).items():
            if isinstance(value, str) and value.startswith("s3://"):
                assert value.startswith(f"s3://{bucket}/"), f"{lid}: {key}={value}"
    assert {"PredictFunction", "ScoreFunction", "TrainWorkerFunction", "TrainCoordinatorFunction"} <= set(functions)


# ---- TrainWorkflow ---------------------------------------------------------------------------

def function_config(client: Any, deployment: deploy.Deployment, lid: str) -> dict[str, Any]:
    return client("lambda").get_function(FunctionName=deployment.physical[lid])["Configuration"]


def function_statements(client: Any, deployment: deploy.Deployment, lid: str) -> list[dict[str, Any]]:
    role = function_config(client, deployment, lid)["Role"].rsplit("/", 1)[1]
    return [s for group in role_statements(client, role).values() for s in group]


def train_definition(client: Any, deployment: deploy.Deployment) -> dict[str, Any]:
    described = client("stepfunctions").describe_state_machine(
        stateMachineArn=deployment.outputs["TrainWorkflowArn"])
    return json.loads(described["definition"])


def tasks(states: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every Task state, the Map's item processor included: name -> state."""
    found = {}
    for name, state in states.items():
        if state["Type"] == "Task":
            found[name] = state
        if state["Type"] == "Map":
            found.update(tasks(state["ItemProcessor"]["States"]))
    return found


@pytest.mark.parametrize("which", ["default", "public"])
def test_train_workflow_definition_after_substitution(client, which, request):
    deployment = request.getfixturevalue(which)
    arn = deployment.outputs["TrainWorkflowArn"]
    stack = deployment.stack["StackName"]
    assert arn == f"arn:aws:states:us-east-1:123456789012:stateMachine:{stack}-train"
    definition = train_definition(client, deployment)
    states = definition["States"]
    assert definition["StartAt"] == "Plan" and set(states) == {"Plan", "CrossValidate", "Finish"}
    coordinator, worker = deployment.physical["TrainCoordinatorFunction"], deployment.physical["TrainWorkerFunction"]
    assert deployment.outputs["TrainCoordinatorFunctionName"] == coordinator

    plan = states["Plan"]
    assert plan["Resource"] == "arn:aws:states:::lambda:invoke" and plan["Next"] == "CrossValidate"
    assert plan["Parameters"] == {"FunctionName": coordinator,
                                  "Payload": {"version": 1, "id": "plan", "task": {"plan.$": "$"}}}, \
        "the coordinator's name (not its ARN), and the input sent as the plan task as is"
    assert plan["ResultSelector"] == {"plan.$": "$.Payload.outcome.plan"}
    assert "ResultPath" not in plan, "the state's output is {plan}, which the Map and Finish read"

    fan = states["CrossValidate"]
    assert fan["Type"] == "Map" and fan["Next"] == "Finish" and fan["ResultPath"] == "$.results"
    limit = 3 if which == "public" else 10
    assert fan["MaxConcurrency"] == limit and type(fan["MaxConcurrency"]) is int, \
        f"MaxConcurrency {fan['MaxConcurrency']!r}: TrainMaxConcurrency substituted as a number"
    assert fan["ItemReader"] == {
        "Resource": "arn:aws:states:::s3:getObject", "ReaderConfig": {"InputType": "JSON"},
        "Parameters": {"Bucket.$": "$.plan.tasks.bucket", "Key.$": "$.plan.tasks.key"},
    }, "the task list plan wrote, read as one JSON array"
    assert "ItemSelector" not in fan, "each item is a complete cv event, sent as is"
    processor = fan["ItemProcessor"]
    assert processor["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    assert processor["StartAt"] == "CvTask"
    cv = processor["States"]["CvTask"]
    assert cv["Parameters"] == {"FunctionName": worker, "Payload.$": "$"}
    assert cv["OutputPath"] == "$.Payload" and cv["End"] is True
    assert cv["Retry"] == [{"ErrorEquals": TRANSIENT, "IntervalSeconds": 2, "BackoffRate": 2.0, "MaxAttempts": 3}]
    assert cv["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "CvFailed"}], \
        "a fold that fails for good becomes its item with an error, which finish refuses naming it"
    assert processor["States"]["CvFailed"] == {"Type": "Pass", "End": True}

    finish = states["Finish"]
    assert finish["Parameters"] == {"FunctionName": coordinator, "Payload": {
        "version": 1, "id": "finish", "task": {"finish": {"plan.$": "$.plan", "results.$": "$.results"}}}}
    assert finish["OutputPath"] == "$.Payload.outcome.finish" and finish["End"] is True

    found = tasks(states)
    assert set(found) == {"Plan", "CvTask", "Finish"}
    for name, task in found.items():
        assert task["Resource"] == "arn:aws:states:::lambda:invoke", name
        errors = [e for retry in task.get("Retry", []) for e in retry["ErrorEquals"]]
        assert errors == TRANSIENT, f"{name} retries {errors}: transient errors only, never Refused or States.ALL"


def test_train_coordinator_function(client, default):
    fn = function_config(client, default, "TrainCoordinatorFunction")
    worker = default.physical["TrainWorkerFunction"]
    assert fn["Runtime"] == "provided.al2023" and fn["Handler"] == "bootstrap"
    assert fn["MemorySize"] == 1769 and fn["Timeout"] == 900
    assert fn["Environment"]["Variables"] == {"TRAIN_WORKER_FUNCTION": worker, "RUST_LOG": "info"}, \
        "the worker's deployed name, for a refit over shards"
    groups = client("logs").describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{fn['FunctionName']}")["logGroups"]
    assert [g.get("retentionInDays") for g in groups] == [14]
    # `sam build` and the local runs (run.py, through emulator_names) use the worker's binary.
    assert deploy.emulator_names(default)[fn["FunctionName"]] == "train-worker"
    assert deploy.emulator_names(default)[worker] == "train-worker"


@pytest.mark.parametrize("which, data, models", [("default", "data", "models"),
                                                 ("public", "training", "prod-models")])
def test_train_coordinator_reads_data_writes_the_store_invokes_the_worker_only(client, which, data, models, request):
    deployment = request.getfixturevalue(which)
    bucket = deployment.outputs["ModelBucketName"]
    stmts = function_statements(client, deployment, "TrainCoordinatorFunction")
    assert sorted(s3_actions(stmts), key=repr) == sorted([
        ("s3:GetObject", f"arn:aws:s3:::{bucket}/{data}/*", None),
        ("s3:GetObject", f"arn:aws:s3:::{bucket}/{models}/*", None),
        ("s3:PutObject", f"arn:aws:s3:::{bucket}/{models}/*", None),
        ("s3:AbortMultipartUpload", f"arn:aws:s3:::{bucket}/{models}/*", None),
        ("s3:ListBucket", f"arn:aws:s3:::{bucket}", {"StringLike": {"s3:prefix": [f"{data}/*", f"{models}/*"]}}),
    ], key=repr)
    worker_arn = function_config(client, deployment, "TrainWorkerFunction")["FunctionArn"]
    others = [(a, s["Resource"]) for s in stmts for a in as_list(s["Action"]) if not a.startswith("s3:")]
    assert others == [("lambda:InvokeFunction", worker_arn)], "nothing but invoking the worker"


def test_train_worker_still_reads_staging_only(client, default):
    bucket = default.outputs["ModelBucketName"]
    stmts = function_statements(client, default, "TrainWorkerFunction")
    assert s3_actions(stmts) == [
        ("s3:GetObject", f"arn:aws:s3:::{bucket}/models/_staging/*", None),
        ("s3:ListBucket", f"arn:aws:s3:::{bucket}", {"StringLike": {"s3:prefix": ["models/_staging/*"]}}),
    ]
    assert {a for s in stmts for a in as_list(s["Action"])} == {"s3:GetObject", "s3:ListBucket"}


def test_train_workflow_role(client, default):
    arn = default.outputs["TrainWorkflowArn"]
    described = client("stepfunctions").describe_state_machine(stateMachineArn=arn)
    role = described["roleArn"].rsplit("/", 1)[1]
    trust = statements(client("iam").get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"])
    assert [s["Principal"] for s in trust] == [{"Service": "states.amazonaws.com"}]
    [stmts] = role_statements(client, role).values()
    by_sid = {s["Sid"]: s for s in stmts}
    assert set(by_sid) == {"InvokeTrainFunctions", "ReadTaskList", "MapChildren", "MapChildrenState"}
    coordinator = function_config(client, default, "TrainCoordinatorFunction")["FunctionArn"]
    worker = function_config(client, default, "TrainWorkerFunction")["FunctionArn"]
    assert by_sid["InvokeTrainFunctions"]["Action"] == "lambda:InvokeFunction"
    assert by_sid["InvokeTrainFunctions"]["Resource"] == [coordinator, f"{coordinator}:*", worker, f"{worker}:*"]
    bucket = default.outputs["ModelBucketName"]
    assert s3_actions(stmts) == [("s3:GetObject", f"arn:aws:s3:::{bucket}/models/_staging/*", None)], \
        "the ItemReader reads the task list; the role touches no data and no published model"
    assert (by_sid["MapChildren"]["Action"], by_sid["MapChildren"]["Resource"]) == ("states:StartExecution", arn)
    assert sorted(by_sid["MapChildrenState"]["Action"]) == ["states:DescribeExecution", "states:StopExecution"]
    assert by_sid["MapChildrenState"]["Resource"] == arn.replace(":stateMachine:", ":execution:") + "/*"


def failed_assertions(template: dict[str, Any], parameters: dict[str, str]) -> list[str]:
    """The AssertDescription of every Rules assertion that fails for these parameters (defaults
    filled in), evaluated as CloudFormation does before creating anything. moto ignores Rules;
    `sam deploy` sends them to CloudFormation unchanged (checked below)."""
    values = {k: str(spec.get("Default", "")) for k, spec in template["Parameters"].items()}
    values.update(parameters)

    def ev(v: Any) -> Any:
        if isinstance(v, dict) and len(v) == 1:
            [(key, arg)] = v.items()
            if key == "Ref":
                return values[arg]
            if key == "Fn::Equals":
                return str(ev(arg[0])) == str(ev(arg[1]))
            if key == "Fn::Not":
                return not ev(arg[0])
            if key == "Fn::And":
                return all(ev(x) for x in arg)
            if key == "Fn::Or":
                return any(ev(x) for x in arg)
            raise AssertionError(f"rule function {key} not evaluated by this test")
        return v

    failed = []
    for rule in template.get("Rules", {}).values():
        if "RuleCondition" in rule and not ev(rule["RuleCondition"]):
            continue
        failed += [a["AssertDescription"] for a in rule["Assertions"] if not ev(a["Assert"])]
    return failed


def test_train_data_prefix_never_overlaps_the_model_prefix(default):
    """A model or staged object under the data prefix would count as training data (and, with
    RetrainOnNewData, start another run): refused before anything is created. Both prefixes are
    one key segment, so differing names are disjoint prefixes."""
    template = deploy.load_template()
    assert default.translated["Rules"] == template["Rules"], "SAM's translation keeps the Rules"
    assert failed_assertions(template, {}) == []
    assert failed_assertions(template, {"TrainDataPrefix": "training", "ModelPrefix": "prod-models"}) == []
    for params in ({"TrainDataPrefix": "models"}, {"TrainDataPrefix": "x", "ModelPrefix": "x"}):
        [why] = failed_assertions(template, params)
        assert "TrainDataPrefix" in why and "ModelPrefix" in why, why
    pattern = template["Parameters"]["TrainDataPrefix"]["AllowedPattern"]
    for nested in ("models/data", "data/models", "data/", "/data", ""):
        assert re.fullmatch(pattern, nested) is None, f"TrainDataPrefix {nested!r} accepted"
    assert template["Parameters"]["ModelPrefix"]["AllowedPattern"] == pattern
