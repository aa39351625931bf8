"""Deploy infra/template.yaml to an AWS-compatible endpoint (moto in the tests) the way `sam deploy`
would, without SAM CLI:

1. read the template (YAML with CloudFormation's short-form tags);
2. package: every `AWS::Serverless::Function` whose `CodeUri` is a local path gets a zip uploaded
   to a staging bucket, and `CodeUri` becomes that S3 location (what `sam package` does). The zip
   is a placeholder (`bootstrap` that exits 1) unless `--code DIR` names a directory holding
   `<binary>/bootstrap.zip` from `cargo lambda build --output-format zip`: moto stores a
   function's code but runs it only in Docker images pulled from a registry, so the tests run
   the functions under `cargo lambda watch` instead, and the zip's size is `build-lambda`'s check;
3. translate the SAM template into plain CloudFormation, offline, with aws-sam-translator (AWS
   managed policy names are looked up in the endpoint's IAM, as SAM CLI does against AWS);
4. create the stack and wait for CREATE_COMPLETE; on any other end state, raise an error that
   names every failed resource and its reason;
5. moto's CloudFormation skips, with only a log warning, resource types it does not model
   (moto 5.2.5: AWS::S3::BucketPolicy, AWS::Lambda::Url, AWS::Scheduler::Schedule, ...). So
   such resources are taken out of the stack and created afterwards through their own APIs
   (which moto does implement and validate), with their properties resolved against the stack
   (Ref, GetAtt, Sub, Join, If, conditions); outputs that name them are computed the same way.
   A type in neither list fails the deploy, naming the resource: nothing is skipped silently.

As a command: python deploy.py --endpoint http://127.0.0.1:PORT [--stack-name NAME]
  [--parameter KEY=VALUE ...] [--translate-only] prints the stack's outputs (or the translated
  template) as JSON.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import os
import re
import sys
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "infra" / "template.yaml"
# The staging bucket `sam deploy --resolve-s3` would create, for the packaged code.
STAGING_BUCKET = "digits-sam-staging"
# A template is a few hundred KB at most; CloudFormation's own limit for a body is 51,200 bytes
# and 1 MB through S3. Refuse anything larger before parsing it.
MAX_TEMPLATE_BYTES = 1_000_000
# Lambda's limit for a zipped package (direct upload); the project's own limit is 5 MB.
MAX_PACKAGE_BYTES = 50 * 1024 * 1024
# Longest wait for a stack to settle.
STACK_TIMEOUT_SECONDS = 120
TERMINAL_OK = "CREATE_COMPLETE"

# Short-form tags whose value is not simply wrapped in {"Fn::<Name>": value}.
_SPECIAL_TAGS = {"Ref": "Ref", "Condition": "Condition"}
_FN_TAGS = [
    "And", "Base64", "Cidr", "Equals", "FindInMap", "GetAtt", "GetAZs", "If", "ImportValue",
    "Join", "Not", "Or", "Select", "Split", "Sub", "Transform", "Length", "ToJsonString",
]


class DeployError(Exception):
    """A template that cannot be read, packaged, translated or deployed; the message says where."""


class _CfnLoader(yaml.SafeLoader):
    """PyYAML's safe loader plus CloudFormation's short-form intrinsic tags."""


def _construct(tag: str):
    key = _SPECIAL_TAGS.get(tag, f"Fn::{tag}")

    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if tag == "GetAtt":
                resource, _, attribute = str(value).partition(".")
                if not attribute:
                    mark = node.start_mark
                    raise DeployError(
                        f"line {mark.line + 1}: !GetAtt {value!r}: expected RESOURCE.ATTRIBUTE"
                    )
                value = [resource, attribute]
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {key: value}

    return construct


for _tag in [*_SPECIAL_TAGS, *_FN_TAGS]:
    _CfnLoader.add_constructor(f"!{_tag}", _construct(_tag))


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """Reads a CloudFormation/SAM template (YAML or JSON, short-form tags allowed)."""
    try:
        size = path.stat().st_size
        if size > MAX_TEMPLATE_BYTES:
            raise DeployError(f"{path}: {size} bytes; at most {MAX_TEMPLATE_BYTES}")
        text = path.read_text(encoding="utf-8")
        doc = yaml.load(text, Loader=_CfnLoader)  # noqa: S506 (a SafeLoader subclass)
    except (OSError, UnicodeDecodeError) as e:
        raise DeployError(f"{path}: {e}") from e
    except yaml.YAMLError as e:
        raise DeployError(f"{path}: {e}") from e
    except DeployError as e:
        raise DeployError(f"{path}: {e}") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("Resources"), dict):
        raise DeployError(f"{path}: not a template (no Resources mapping)")
    return doc


def placeholder_zip() -> bytes:
    """A Lambda package whose `bootstrap` only says that it is a placeholder."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        info = zipfile.ZipInfo("bootstrap", date_time=(2020, 1, 1, 0, 0, 0))
        info.external_attr = 0o755 << 16
        z.writestr(info, "#!/bin/sh\necho 'placeholder package (infra/workflows/deploy.py)' >&2\nexit 1\n")
    return buf.getvalue()


@dataclass
class Packaged:
    """What package() uploaded: function logical id -> (bucket, key, bytes, source)."""

    code: dict[str, tuple[str, str, int, str]] = field(default_factory=dict)


def package(template: dict[str, Any], s3: Any, code_dir: Path | None = None) -> Packaged:
    """Uploads each local-path CodeUri's package and points CodeUri at it (in place)."""
    packaged = Packaged()
    for logical_id, resource in template["Resources"].items():
        if not isinstance(resource, dict) or resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = resource.setdefault("Properties", {})
        code_uri = props.get("CodeUri")
        if not isinstance(code_uri, str) or code_uri.startswith("s3://"):
            continue
        binary = (resource.get("Metadata") or {}).get("BuildProperties", {}).get("Binary", logical_id)
        body, source = placeholder_zip(), "placeholder"
        if code_dir is not None:
            built = code_dir / str(binary) / "bootstrap.zip"
            if built.is_file():
                size = built.stat().st_size
                if size > MAX_PACKAGE_BYTES:
                    raise DeployError(f"{built}: {size} bytes; Lambda takes at most {MAX_PACKAGE_BYTES} zipped")
                body, source = built.read_bytes(), str(built)
        key = f"packages/{logical_id}/bootstrap.zip"
        s3.put_object(Bucket=STAGING_BUCKET, Key=key, Body=body)
        props["CodeUri"] = {"Bucket": STAGING_BUCKET, "Key": key}
        packaged.code[logical_id] = (STAGING_BUCKET, key, len(body), source)
    return packaged


def translate(template: dict[str, Any], parameters: dict[str, str], iam: Any,
              region: str = "us-east-1") -> dict[str, Any]:
    """SAM -> plain CloudFormation with aws-sam-translator, offline but for IAM's managed policy
    names (looked up through `iam`, as SAM CLI does). What `samtranslator.transform` does, with
    the region given rather than taken from the environment."""
    import boto3
    from samtranslator.model.exceptions import InvalidDocumentException
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.managed_policy_translator import ManagedPolicyLoader
    from samtranslator.translator.translator import Translator
    from samtranslator.utils.py27hash_fix import (
        to_py27_compatible_template,
        undo_mark_unicode_str_in_template,
    )

    fragment, values = copy.deepcopy(template), dict(parameters)
    loader = ManagedPolicyLoader(iam)
    try:
        to_py27_compatible_template(fragment, values)
        translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=region))
        translated = translator.translate(fragment, parameter_values=values,
                                          get_managed_policy_map=loader.load)
        return undo_mark_unicode_str_in_template(translated)
    except InvalidDocumentException as e:
        causes = "; ".join(str(c.message) for c in e.causes)
        raise DeployError(f"aws-sam-translator refused the template: {causes}") from e


def stack_failures(cfn: Any, stack_name: str) -> list[str]:
    """Every resource event of the stack that failed, as 'LogicalId (Type): reason'."""
    out = []
    for page in cfn.get_paginator("describe_stack_events").paginate(StackName=stack_name):
        for event in page["StackEvents"]:
            if event.get("ResourceStatus", "").endswith("_FAILED"):
                out.append(
                    f"{event['LogicalResourceId']} ({event.get('ResourceType')}): "
                    f"{event.get('ResourceStatusReason', 'no reason given')}"
                )
    return out


def create_stack(cfn: Any, stack_name: str, body: dict[str, Any], parameters: dict[str, str],
                 timeout: float = STACK_TIMEOUT_SECONDS) -> dict[str, Any]:
    """Creates the stack and waits for CREATE_COMPLETE; returns describe_stacks' entry."""
    from botocore.exceptions import ClientError

    try:
        cfn.create_stack(
            StackName=stack_name,
            TemplateBody=json.dumps(body),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
            OnFailure="DO_NOTHING",
        )
    except ClientError as e:
        raise DeployError(f"stack {stack_name}: CreateStack refused: {e}") from e
    deadline = time.monotonic() + timeout
    while True:
        stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
        status = stack["StackStatus"]
        if status == TERMINAL_OK:
            return stack
        if not status.endswith("_IN_PROGRESS"):
            failures = stack_failures(cfn, stack_name) or [stack.get("StackStatusReason", "")]
            raise DeployError(f"stack {stack_name}: {status}: " + "; ".join(failures))
        if time.monotonic() > deadline:
            raise DeployError(f"stack {stack_name}: still {status} after {timeout:.0f} s")
        time.sleep(0.2)


# moto's CloudFormation creates state machines in its plain Step Functions backend, but with
# execute_state_machine on, the API (StartExecution, Describe*) serves another backend that never
# sees them. So state machines are always created through the API (whose ASL parser then also
# validates each definition), like the types moto does not model.
ALWAYS_THROUGH_API = ("AWS::StepFunctions::StateMachine",)
_NO_VALUE = object()
_SUB_REF = re.compile(r"\$\{(?!!)([A-Za-z0-9_:]+)(?:\.([A-Za-z0-9_.]+))?\}")


def unmodelled_types(template: dict[str, Any]) -> dict[str, str]:
    """Logical id -> type of every resource moto's CloudFormation would skip."""
    from moto.cloudformation.parsing import NULL_MODELS, get_model_map

    models = get_model_map()
    return {
        lid: r["Type"]
        for lid, r in template["Resources"].items()
        if r["Type"] not in models and r["Type"] not in NULL_MODELS
        and not r["Type"].startswith("Custom::")
    }


def references(value: Any) -> set[str]:
    """Every logical id (or parameter) that `value` names through Ref, GetAtt or Sub."""
    out: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref" and isinstance(inner, str):
                out.add(inner)
            elif key == "Fn::GetAtt" and isinstance(inner, list) and inner:
                out.add(str(inner[0]))
            elif key == "Fn::Sub":
                text = inner if isinstance(inner, str) else inner[0]
                out.update(m.group(1) for m in _SUB_REF.finditer(str(text)))
                if isinstance(inner, list) and len(inner) > 1:
                    out.update(references(inner[1]))
            else:
                out.update(references(inner))
    elif isinstance(value, list):
        for inner in value:
            out.update(references(inner))
    return out


class Resolver:
    """Resolves intrinsic functions against a created stack (what CloudFormation does for the
    resources deploy.py creates itself)."""

    def __init__(self, template: dict[str, Any], parameters: dict[str, str],
                 physical: dict[str, str], getatt: Any, stack_name: str, region: str) -> None:
        self.template = template
        self.parameters = parameters
        self.physical = physical
        self.getatt_fn = getatt
        self.pseudo = {
            "AWS::Region": region, "AWS::AccountId": "123456789012", "AWS::Partition": "aws",
            "AWS::StackName": stack_name, "AWS::URLSuffix": "amazonaws.com",
        }

    def condition(self, name: str) -> bool:
        try:
            return bool(self.value(self.template.get("Conditions", {})[name]))
        except KeyError as e:
            raise DeployError(f"Conditions: no condition {name!r}") from e

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return _NO_VALUE
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.physical:
            return self.physical[name]
        raise DeployError(f"Ref {name!r}: no such parameter or created resource")

    def sub(self, text: str, names: dict[str, Any]) -> str:
        def one(m: re.Match[str]) -> str:
            name, attr = m.group(1), m.group(2)
            if attr is None and name in names:
                return str(names[name])
            return str(self.getatt_fn(name, attr) if attr else self.ref(name))

        return _SUB_REF.sub(one, text).replace("${!", "${")

    def value(self, v: Any) -> Any:
        if isinstance(v, list):
            return [x for x in (self.value(i) for i in v) if x is not _NO_VALUE]
        if not isinstance(v, dict):
            return v
        if len(v) == 1:
            (key, arg), = v.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Condition":
                return self.condition(arg)
            if key == "Fn::GetAtt":
                return self.getatt_fn(arg[0], arg[1])
            if key == "Fn::Sub":
                if isinstance(arg, str):
                    return self.sub(arg, {})
                return self.sub(arg[0], {k: self.value(x) for k, x in arg[1].items()})
            if key == "Fn::Join":
                return str(arg[0]).join(str(x) for x in self.value(arg[1]))
            if key == "Fn::If":
                return self.value(arg[1] if self.condition(arg[0]) else arg[2])
            if key == "Fn::Equals":
                a, b = self.value(arg)
                return str(a) == str(b)
            if key == "Fn::Not":
                return not self.value(arg[0])
            if key == "Fn::And":
                return all(self.value(arg))
            if key == "Fn::Or":
                return any(self.value(arg))
            if key.startswith("Fn::"):
                raise DeployError(f"{key}: not resolved by deploy.py")
        return {k: x for k, x in ((k, self.value(x)) for k, x in v.items()) if x is not _NO_VALUE}


def _gap_bucket_policy(client: Any, props: dict[str, Any]) -> tuple[str, dict[str, str]]:
    bucket = props["Bucket"]
    client("s3").put_bucket_policy(Bucket=bucket, Policy=json.dumps(props["PolicyDocument"]))
    return bucket, {}


def _gap_function_url(client: Any, props: dict[str, Any]) -> tuple[str, dict[str, str]]:
    args = {"FunctionName": props["TargetFunctionArn"], "AuthType": props["AuthType"]}
    for key in ("Qualifier", "Cors", "InvokeMode"):
        if key in props:
            args[key] = props[key]
    url = client("lambda").create_function_url_config(**args)
    return url["FunctionArn"], {"FunctionUrl": url["FunctionUrl"], "FunctionArn": url["FunctionArn"]}


def _gap_schedule(client: Any, props: dict[str, Any]) -> tuple[str, dict[str, str]]:
    args = {k: v for k, v in props.items() if k != "Name"}
    name = props.get("Name") or f"schedule-{uuid.uuid4().hex[:12]}"
    arn = client("scheduler").create_schedule(Name=name, **args)["ScheduleArn"]
    return name, {"Arn": arn}


def _gap_state_machine(client: Any, props: dict[str, Any]) -> tuple[str, dict[str, str]]:
    definition = props.get("DefinitionString")
    if definition is None:
        definition = json.dumps(props["Definition"])
    for name, value in (props.get("DefinitionSubstitutions") or {}).items():
        definition = definition.replace("${" + name + "}", str(value))
    left = _SUB_REF.search(definition)
    if left:
        raise DeployError(f"definition: ${{{left.group(1)}}} has no DefinitionSubstitutions entry")
    name = props.get("StateMachineName") or f"sm-{uuid.uuid4().hex[:12]}"
    args: dict[str, Any] = {"name": name, "definition": definition, "roleArn": props["RoleArn"],
                            "type": props.get("StateMachineType", "STANDARD")}
    for cfn_key, api_key in (("LoggingConfiguration", "loggingConfiguration"),
                             ("TracingConfiguration", "tracingConfiguration")):
        if cfn_key in props:
            args[api_key] = _lower_first_keys(props[cfn_key])
    if props.get("Tags"):
        args["tags"] = [{"key": t["Key"], "value": t["Value"]} for t in props["Tags"]]
    arn = client("stepfunctions").create_state_machine(**args)["stateMachineArn"]
    return arn, {"Arn": arn, "Name": name}


def _lower_first_keys(v: Any) -> Any:
    """CloudFormation's PascalCase keys -> the Step Functions API's camelCase."""
    if isinstance(v, dict):
        return {k[:1].lower() + k[1:]: _lower_first_keys(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_lower_first_keys(x) for x in v]
    return v


def _gap_role(client: Any, props: dict[str, Any]) -> tuple[str, dict[str, str]]:
    iam = client("iam")
    name = props.get("RoleName") or f"role-{uuid.uuid4().hex[:12]}"
    role = iam.create_role(RoleName=name, Path=props.get("Path", "/"),
                           AssumeRolePolicyDocument=json.dumps(props["AssumeRolePolicyDocument"]),
                           Description=props.get("Description", ""))["Role"]
    for policy in props.get("Policies") or []:
        # SAM writes some policies without "Version" (IAM then assumes 2008-10-17); moto's
        # PutRolePolicy refuses those, so they get the current version, same statements.
        document = {"Version": "2012-10-17", **policy["PolicyDocument"]}
        iam.put_role_policy(RoleName=name, PolicyName=policy["PolicyName"],
                            PolicyDocument=json.dumps(document))
    for arn in props.get("ManagedPolicyArns") or []:
        iam.attach_role_policy(RoleName=name, PolicyArn=arn)
    return name, {"Arn": role["Arn"], "RoleId": role["RoleId"]}


def _gap_rule(client: Any, props: dict[str, Any]) -> tuple[str, dict[str, str]]:
    events = client("events")
    name = props.get("Name") or f"rule-{uuid.uuid4().hex[:12]}"
    args: dict[str, Any] = {"Name": name, "State": props.get("State", "ENABLED")}
    for key in ("ScheduleExpression", "Description", "EventBusName", "RoleArn"):
        if key in props:
            args[key] = props[key]
    if "EventPattern" in props:
        pattern = props["EventPattern"]
        args["EventPattern"] = pattern if isinstance(pattern, str) else json.dumps(pattern)
    arn = events.put_rule(**args)["RuleArn"]
    if props.get("Targets"):
        events.put_targets(Rule=name, EventBusName=props.get("EventBusName", "default"),
                           Targets=props["Targets"])
    return name, {"Arn": arn}


GAP_HANDLERS = {
    "AWS::StepFunctions::StateMachine": _gap_state_machine,
    "AWS::IAM::Role": _gap_role,
    "AWS::Events::Rule": _gap_rule,
    "AWS::S3::BucketPolicy": _gap_bucket_policy,
    "AWS::Lambda::Url": _gap_function_url,
    "AWS::Scheduler::Schedule": _gap_schedule,
}


def moto_name_fixups(template: dict[str, Any], stack_name: str) -> list[str]:
    """moto 5.2.5 names an AWS::ECR::Repository without RepositoryName `<stack>-<LogicalId>-<id>`,
    upper case included, then refuses that name itself (AWS generates a lower-case one). Give such
    repositories the lower-case name AWS would; returns what was changed, for the test's log."""
    changed = []
    for lid, resource in template["Resources"].items():
        if resource["Type"] == "AWS::ECR::Repository":
            props = resource.setdefault("Properties", {})
            if "RepositoryName" not in props:
                props["RepositoryName"] = f"{stack_name}-{lid}".lower()
                changed.append(f"{lid}.RepositoryName = {props['RepositoryName']}")
    return changed


def fold_conditions(template: dict[str, Any], parameters: dict[str, str]) -> int:
    """Replaces every Fn::If by its chosen branch and drops `Ref: AWS::NoValue` entries (in
    place), as CloudFormation does; returns how many were folded. Needed because moto 5.2.5
    leaves a None where AWS::NoValue stood in a list (an IAM role's Policies then crashes it)."""
    values = {
        name: parameters.get(name, spec.get("Default"))
        for name, spec in (template.get("Parameters") or {}).items()
    }

    def no_getatt(lid: str, attr: str | None) -> str:
        raise DeployError(f"a condition names {lid}.{attr}; conditions may name parameters only")

    resolver = Resolver(template, {k: v for k, v in values.items() if v is not None}, {},
                        no_getatt, "stack", "us-east-1")
    folded = 0

    def fold(v: Any) -> Any:
        nonlocal folded
        if isinstance(v, list):
            return [x for x in (fold(i) for i in v) if x is not _NO_VALUE]
        if not isinstance(v, dict):
            return v
        if v == {"Ref": "AWS::NoValue"}:
            return _NO_VALUE
        if len(v) == 1 and "Fn::If" in v:
            folded += 1
            cond, yes, no = v["Fn::If"]
            return fold(yes if resolver.condition(cond) else no)
        return {k: x for k, x in ((k, fold(x)) for k, x in v.items()) if x is not _NO_VALUE}

    for section in ("Resources", "Outputs"):
        if section in template:
            template[section] = fold(template[section])
    return folded


def _bucket_notifications(props: Any) -> dict[str, Any]:
    """CloudFormation's NotificationConfiguration -> S3's PutBucketNotificationConfiguration."""
    def rules(filt: Any) -> dict[str, Any]:
        if not filt:
            return {}
        return {"Filter": {"Key": {"FilterRules": [
            {"Name": r["Name"], "Value": r["Value"]} for r in filt["S3Key"]["Rules"]]}}}

    out: dict[str, Any] = {}
    for cfn_key, api_key, arn_key, api_arn in (
        ("LambdaConfigurations", "LambdaFunctionConfigurations", "Function", "LambdaFunctionArn"),
        ("QueueConfigurations", "QueueConfigurations", "Queue", "QueueArn"),
        ("TopicConfigurations", "TopicConfigurations", "Topic", "TopicArn"),
    ):
        if props.get(cfn_key):
            out[api_key] = [{api_arn: c[arn_key], "Events": [c["Event"]], **rules(c.get("Filter"))}
                            for c in props[cfn_key]]
    if (props.get("EventBridgeConfiguration") or {}).get("EventBridgeEnabled"):
        out["EventBridgeConfiguration"] = {}
    return out


# Properties of modelled types that moto 5.2.5's CloudFormation ignores without a word, applied
# through their APIs after the stack: (type, property) -> fn(client, physical id, value).
PROPERTY_GAPS = {
    ("AWS::S3::Bucket", "VersioningConfiguration"): lambda c, pid, v: c("s3").put_bucket_versioning(
        Bucket=pid, VersioningConfiguration={"Status": v["Status"]}),
    ("AWS::S3::Bucket", "PublicAccessBlockConfiguration"): lambda c, pid, v: c("s3").put_public_access_block(
        Bucket=pid, PublicAccessBlockConfiguration=v),
    ("AWS::S3::Bucket", "OwnershipControls"): lambda c, pid, v: c("s3").put_bucket_ownership_controls(
        Bucket=pid, OwnershipControls={"Rules": v["Rules"]}),
    ("AWS::S3::Bucket", "NotificationConfiguration"): lambda c, pid, v: c("s3").put_bucket_notification_configuration(
        Bucket=pid, NotificationConfiguration=_bucket_notifications(v)),
    ("AWS::IAM::Role", "ManagedPolicyArns"): lambda c, pid, v: [
        c("iam").attach_role_policy(RoleName=pid, PolicyArn=arn) for arn in v],
    ("AWS::EC2::Instance", "SecurityGroupIds"): lambda c, pid, v: c("ec2").modify_instance_attribute(
        InstanceId=pid, Groups=v),
}


def split_gaps(template: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(the template moto can create, the resources deploy.py creates, the outputs naming them)."""
    gaps = unmodelled_types(template)
    gaps.update({lid: r["Type"] for lid, r in template["Resources"].items()
                 if r["Type"] in ALWAYS_THROUGH_API})
    unknown = {lid: t for lid, t in gaps.items() if t not in GAP_HANDLERS}
    if unknown:
        names = ", ".join(f"{lid} ({t})" for lid, t in unknown.items())
        raise DeployError(f"moto's CloudFormation does not model {names}, and deploy.py has no "
                          "API handler for it: add one to GAP_HANDLERS")
    # What refers to a resource created after the stack is created after it too (a role whose
    # policy names a state machine, a rule targeting one, ...).
    while True:
        more = {
            lid: r["Type"] for lid, r in template["Resources"].items()
            if lid not in gaps
            and (references(r) | set(_as_list(r.get("DependsOn")))) & set(gaps)
        }
        if not more:
            break
        cannot = {lid: t for lid, t in more.items() if t not in GAP_HANDLERS}
        if cannot:
            names = ", ".join(f"{lid} ({t})" for lid, t in cannot.items())
            raise DeployError(f"{names} refers to a resource deploy.py creates after the stack "
                              "(see ALWAYS_THROUGH_API), and deploy.py has no API handler for it")
        gaps.update(more)
    stack = copy.deepcopy(template)
    gap_resources = {lid: stack["Resources"].pop(lid) for lid in template["Resources"] if lid in gaps}
    gap_outputs = {k: o for k, o in (stack.get("Outputs") or {}).items()
                   if references(o.get("Value")) & set(gaps)}
    for key in gap_outputs:
        del stack["Outputs"][key]
    return stack, gap_resources, gap_outputs


def _as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else ([] if v is None else [v])


def create_gaps(client: Any, cfn: Any, template: dict[str, Any], stack_name: str,
                gap_resources: dict[str, Any], gap_outputs: dict[str, Any],
                region: str) -> tuple[dict[str, str], dict[str, str]]:
    """Creates what moto's CloudFormation skipped; returns (logical id -> physical id, outputs)."""
    physical = {
        r["LogicalResourceId"]: r["PhysicalResourceId"]
        for r in cfn.describe_stack_resources(StackName=stack_name)["StackResources"]
        # moto lists resources skipped by their Condition without ids.
        if "LogicalResourceId" in r and "PhysicalResourceId" in r
    }
    types = {lid: r["Type"] for lid, r in template["Resources"].items()}
    stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
    parameters = {p["ParameterKey"]: p.get("ResolvedValue", p["ParameterValue"])
                  for p in stack.get("Parameters", [])}
    gap_attrs: dict[str, dict[str, str]] = {}

    def getatt(lid: str, attr: str) -> str:
        if lid in gap_attrs and attr in gap_attrs[lid]:
            return gap_attrs[lid][attr]
        kind, pid = types.get(lid), physical.get(lid)
        if pid is None:
            raise DeployError(f"GetAtt {lid}.{attr}: {lid} was not created")
        if attr == "Arn" and kind == "AWS::S3::Bucket":
            return f"arn:aws:s3:::{pid}"
        if attr == "Arn" and kind == "AWS::Lambda::Function":
            return client("lambda").get_function(FunctionName=pid)["Configuration"]["FunctionArn"]
        if attr == "Arn" and kind == "AWS::IAM::Role":
            return client("iam").get_role(RoleName=pid)["Role"]["Arn"]
        if (kind, attr) in (("AWS::StepFunctions::StateMachine", "Arn"),
                            ("AWS::EC2::SecurityGroup", "GroupId")):
            return pid
        raise DeployError(f"GetAtt {lid}.{attr} ({kind}): not resolved by deploy.py")

    resolver = Resolver(template, parameters, physical, getatt, stack_name, region)
    pending = dict(gap_resources)
    while pending:
        ready = [lid for lid, r in pending.items()
                 if not ((references(r) | set(_as_list(r.get("DependsOn")))) & set(pending) - {lid})]
        if not ready:
            raise DeployError(f"a reference cycle among {sorted(pending)}")
        for lid in ready:
            resource = pending.pop(lid)
            if "Condition" in resource and not resolver.condition(resource["Condition"]):
                continue
            props = resolver.value(resource.get("Properties", {}))
            try:
                pid, attrs = GAP_HANDLERS[resource["Type"]](client, props)
            except DeployError as e:
                raise DeployError(f"{lid} ({resource['Type']}): {e}") from e
            except Exception as e:  # botocore's ClientError and ParamValidationError alike
                raise DeployError(f"{lid} ({resource['Type']}): {e}") from e
            physical[lid], gap_attrs[lid] = pid, attrs
    for lid, resource in template["Resources"].items():
        if lid in gap_resources or lid not in physical:
            continue
        if "Condition" in resource and not resolver.condition(resource["Condition"]):
            continue
        for prop, raw in (resource.get("Properties") or {}).items():
            apply = PROPERTY_GAPS.get((resource["Type"], prop))
            if apply is None:
                continue
            try:
                apply(client, physical[lid], resolver.value(raw))
            except Exception as e:  # botocore's ClientError and ParamValidationError alike
                raise DeployError(f"{lid} ({resource['Type']}).{prop}: {e}") from e
    outputs = {}
    for key, output in gap_outputs.items():
        if "Condition" in output and not resolver.condition(output["Condition"]):
            continue
        outputs[key] = str(resolver.value(output["Value"]))
    return physical, outputs


@dataclass
class Deployment:
    """A deployed stack and what it took to get there."""

    stack: dict[str, Any]
    outputs: dict[str, str]
    translated: dict[str, Any]
    packaged: Packaged
    # Resources moto's CloudFormation cannot model, created by deploy.py: logical id -> physical id.
    created_outside: dict[str, str] = field(default_factory=dict)
    # Changes made only because moto gets them wrong (see moto_name_fixups).
    fixups: list[str] = field(default_factory=list)
    # Every created resource: logical id -> physical id.
    physical: dict[str, str] = field(default_factory=dict)


def clients(endpoint: str, region: str = "us-east-1") -> Any:
    """A boto3 session for `endpoint` (fixed test credentials: moto accepts any)."""
    import boto3

    session = boto3.session.Session(
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
        region_name=region,
    )
    return lambda service: session.client(service, endpoint_url=endpoint)


def deploy(endpoint: str, stack_name: str, parameters: dict[str, str],
           template_path: Path = TEMPLATE, code_dir: Path | None = None,
           leave_out_types: frozenset[str] = frozenset()) -> Deployment:
    """Package, translate and create the stack; see the module's doc. Resources of
    `leave_out_types` are not created (nothing may refer to them; run.py leaves out
    AWS::S3::BucketPolicy, see LOCAL_LEAVE_OUT there)."""
    client = clients(endpoint)
    s3, iam, cfn = client("s3"), client("iam"), client("cloudformation")
    template = load_template(template_path)
    try:
        s3.create_bucket(Bucket=STAGING_BUCKET)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    packaged = package(template, s3, code_dir)
    translated = translate(template, parameters, iam)
    for lid in [lid for lid, r in translated["Resources"].items() if r["Type"] in leave_out_types]:
        del translated["Resources"][lid]
        named = [other for other, r in translated["Resources"].items() if lid in references(r)]
        if named:
            raise DeployError(f"{lid} is left out, but {named} refer to it")
    body, gap_resources, gap_outputs = split_gaps(translated)
    fixups = moto_name_fixups(body, stack_name)
    fold_conditions(body, parameters)
    stack = create_stack(cfn, stack_name, body, parameters)
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    physical, more = create_gaps(client, cfn, translated, stack_name, gap_resources, gap_outputs,
                                 "us-east-1")
    outputs.update(more)
    created_outside = {lid: physical[lid] for lid in gap_resources if lid in physical}
    return Deployment(stack=stack, outputs=outputs, translated=translated, packaged=packaged,
                      created_outside=created_outside, fixups=fixups, physical=physical)


def emulator_names(deployment: Deployment, template_path: Path = TEMPLATE) -> dict[str, str]:
    """Deployed function name -> the binary `cargo lambda watch` serves it as (the function's
    `Metadata.BuildProperties.Binary`, as `sam build` uses it; else its logical id)."""
    source = load_template(template_path)["Resources"]
    names = {}
    for lid, resource in deployment.translated["Resources"].items():
        if resource["Type"] != "AWS::Lambda::Function" or lid not in source:
            continue
        binary = ((source[lid].get("Metadata") or {}).get("BuildProperties") or {}).get("Binary", lid)
        names[deployment.physical[lid]] = str(binary)
    return names


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint", required=True, help="http://HOST:PORT (moto's server)")
    parser.add_argument("--stack-name", default="digits")
    parser.add_argument("--template", type=Path, default=TEMPLATE)
    parser.add_argument("--code", type=Path, help="cargo lambda build's output directory")
    parser.add_argument("--parameter", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--translate-only", action="store_true")
    args = parser.parse_args()
    parameters = {}
    for item in args.parameter:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--parameter {item!r}: expected KEY=VALUE")
        parameters[key] = value
    try:
        if args.translate_only:
            client = clients(args.endpoint)
            template = load_template(args.template)
            client("s3").create_bucket(Bucket=STAGING_BUCKET)
            package(template, client("s3"), args.code)
            json.dump(translate(template, parameters, client("iam")), sys.stdout, indent=2)
        else:
            result = deploy(args.endpoint, args.stack_name, parameters, args.template, args.code)
            json.dump(result.outputs, sys.stdout, indent=2)
    except DeployError as e:
        print(f"deploy: {e}", file=sys.stderr)
        return 1
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
