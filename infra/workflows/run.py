"""Run one of the template's state machines locally, end to end, and stop everything after:

1. moto's server (motoserver.py) on a free loopback port, with the Invoke adapter;
2. the template deployed to it (deploy.py: aws-sam-translator, then moto's CloudFormation);
3. one `cargo lambda watch` per function the state machine calls, each with the environment the
   stack gave that function, plus the S3 endpoint of moto (so the functions and the state
   machine's ItemReader see the same buckets);
4. files uploaded to the stack's bucket (`--put LOCAL=KEY`);
5. StartExecution with `--input` (`{OutputName}` replaced by the stack's outputs), waited for
   (bounded), its output printed; exit 1, with the error and cause, if it did not succeed.

`make workflow-train` / `make workflow-score` are this with their state machine's name.

Usage: python run.py --state-machine LOGICAL_ID [--template FILE] [--parameter K=V ...]
  [--put LOCAL=KEY ...] [--input JSON] [--bucket-output NAME] [--crate DIR] [--timeout S]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from collections.abc import Callable
from typing import Any

import deploy
import harness

# Credentials for moto only: it accepts any; these are not, and must never be, real ones.
LOCAL_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
             "AWS_REGION": "us-east-1", "RUST_LOG": "info"}
DEFAULT_PARAMETERS = {"AllowedCidr": "127.0.0.1/32"}
# moto 5.2.5 applies a bucket policy's Deny statements to object requests whatever their
# Condition, so the bucket's deny-non-TLS policy would deny every read and write; local runs
# leave bucket policies out (the deploy test checks them).
LOCAL_LEAVE_OUT = frozenset({"AWS::S3::BucketPolicy"})
_PLACEHOLDER = re.compile(r"\{([A-Za-z0-9]+)\}")


class RunError(Exception):
    """A run that could not start or did not succeed; the message says which and why."""


def workspace_packages(crate: Path) -> dict[str, str]:
    """Binary name -> its package, from `cargo metadata` of the workspace at `crate`."""
    out = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"], cwd=crate,
                         capture_output=True, text=True, timeout=120, check=False)
    if out.returncode != 0:
        raise RunError(f"cargo metadata in {crate}: {out.stderr.strip()[-2000:]}")
    packages = {}
    for package in json.loads(out.stdout)["packages"]:
        for target in package["targets"]:
            if "bin" in target["kind"]:
                packages[target["name"]] = package["name"]
    return packages


def called_functions(definition: str, names: dict[str, str]) -> list[str]:
    """The deployed functions whose name appears in a state machine's definition."""
    return [deployed for deployed in names if f'"{deployed}"' in definition]


def wait_for(sfn: Any, execution: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (described := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
        if time.monotonic() > deadline:
            sfn.stop_execution(executionArn=execution, error="Timeout",
                               cause=f"run.py: still running after {timeout:.0f} s")
            raise RunError(f"{execution}: still RUNNING after {timeout:.0f} s (stopped)")
        time.sleep(0.2)
    return described


def run_workflow(state_machine: str, *, template: Path = deploy.TEMPLATE,
                 parameters: dict[str, str] | None = None, puts: dict[Path, str] | None = None,
                 payload: str = "{}", bucket_output: str = "ModelBucketName",
                 crate: Path = harness.ROOT, target: Path | None = None,
                 timeout: float = 600, work: Path | None = None,
                 inspect: Callable[[Any, deploy.Deployment], None] | None = None) -> dict[str, Any]:
    """Does what the module's doc says; returns describe_execution's answer (any status).
    `inspect(client, deployment)`, if given, runs after the execution and before everything
    is stopped (to read what the functions wrote)."""
    work = work or Path(tempfile.mkdtemp(prefix="workflow-run-"))
    work.mkdir(parents=True, exist_ok=True)
    function_map = work / "functions.json"
    moto, endpoint = harness.start_moto(work, function_map=function_map)
    emulators: list[harness.Started] = []
    try:
        deployment = deploy.deploy(endpoint, "digits-local", {**DEFAULT_PARAMETERS, **(parameters or {})},
                                   template_path=template, leave_out_types=LOCAL_LEAVE_OUT)
        if state_machine not in deployment.physical:
            raise RunError(f"{template}: no resource {state_machine} (a state machine) in the stack")
        arn = deployment.physical[state_machine]
        client = deploy.clients(endpoint)
        sfn = client("stepfunctions")
        definition = sfn.describe_state_machine(stateMachineArn=arn)["definition"]
        names = deploy.emulator_names(deployment, template)
        in_workspace = (crate / "Cargo.toml").is_file() and "[workspace]" in (crate / "Cargo.toml").read_text()
        packages = workspace_packages(crate) if in_workspace else {}
        specs = {}
        for deployed in called_functions(definition, names):
            binary = names[deployed]
            select = ["--package", packages[binary], "--bin", binary] if binary in packages else []
            specs[deployed] = {"name": binary, "cwd": crate, "select": select,
                               "target": target or (crate / "target")}
        emulators = harness.start_function_emulators(
            work, endpoint, specs, function_map, extra_env={**LOCAL_ENV, "AWS_ENDPOINT_URL_S3": endpoint})
        bucket = deployment.outputs.get(bucket_output)
        for local, key in (puts or {}).items():
            if bucket is None:
                raise RunError(f"--put needs the stack output {bucket_output}, which it does not have")
            client("s3").upload_file(str(local), bucket, key)

        def fill(m: re.Match[str]) -> str:
            if m.group(1) not in deployment.outputs:
                raise RunError(f"--input: {{{m.group(1)}}} is not an output of the stack")
            return deployment.outputs[m.group(1)]

        execution_input = _PLACEHOLDER.sub(fill, payload)
        try:
            json.loads(execution_input)
        except json.JSONDecodeError as e:
            raise RunError(f"--input is not JSON ({e}): {execution_input}") from e
        execution = sfn.start_execution(stateMachineArn=arn, name=uuid.uuid4().hex,
                                        input=execution_input)["executionArn"]
        described = wait_for(sfn, execution, timeout)
        if inspect is not None:
            inspect(client, deployment)
        return described
    finally:
        for emulator in emulators:
            emulator.stop()
        moto.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--state-machine", required=True, help="its logical id in the template")
    parser.add_argument("--template", type=Path, default=deploy.TEMPLATE)
    parser.add_argument("--parameter", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--put", action="append", default=[], metavar="LOCAL=KEY")
    parser.add_argument("--input", default="{}", help="execution input; {Output} = a stack output")
    parser.add_argument("--bucket-output", default="ModelBucketName")
    parser.add_argument("--crate", type=Path, default=harness.ROOT, help="where the functions' crates are")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()

    def pairs(items: list[str], flag: str) -> dict[str, str]:
        out = {}
        for item in items:
            key, sep, value = item.partition("=")
            if not sep:
                parser.error(f"{flag} {item!r}: expected A=B")
            out[key] = value
        return out

    try:
        described = run_workflow(
            args.state_machine, template=args.template, parameters=pairs(args.parameter, "--parameter"),
            puts={Path(k): v for k, v in pairs(args.put, "--put").items()}, payload=args.input,
            bucket_output=args.bucket_output, crate=args.crate, timeout=args.timeout)
    except (RunError, deploy.DeployError, harness.HarnessError) as e:
        print(f"run: {e}", file=sys.stderr)
        return 1
    if described["status"] != "SUCCEEDED":
        print(f"run: {args.state_machine}: {described['status']}: {described.get('error', '')}: "
              f"{described.get('cause', '')}", file=sys.stderr)
        return 1
    print(json.dumps(json.loads(described["output"]), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
