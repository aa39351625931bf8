"""Run one of the template's state machines locally, end to end, and stop everything after:

1. moto's server (motoserver.py) on a free loopback port, with the Invoke adapter;
2. the template deployed to it (deploy.py: aws-sam-translator, then moto's CloudFormation);
3. one `cargo lambda watch` per function the state machine calls, each with the environment the
   stack gave that function, plus the S3 endpoint of moto (so the functions and the state
   machine's ItemReader see the same buckets) and the Lambda endpoint of motoserver.py's Invoke
   adapter (so a function invoking another reaches that one's emulator);
4. files uploaded to the stack's bucket (`--put LOCAL=KEY`; `--put-dir DIR=PREFIX`: every file
   under DIR, at PREFIX/<its path under DIR>);
5. StartExecution with `--input` (`{OutputName}` replaced by the stack's outputs), waited for
   (bounded), its output printed; exit 1, with the error and cause, if it did not succeed.

`make workflow-train` / `make workflow-score` are this with their state machine's name.

Usage: python run.py --state-machine LOGICAL_ID [--template FILE] [--parameter K=V ...]
  [--put LOCAL=KEY ...] [--put-dir DIR=PREFIX ...] [--input JSON] [--bucket-output NAME]
  [--crate DIR] [--timeout S]
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


class Local:
    """moto with the template deployed and one `cargo lambda watch` per function the named state
    machines call, kept running for any number of executions (steps 1-3 of the module's doc);
    a context manager: everything it started is stopped on exit, by pid.

    Each emulator gets the function's environment from the stack, test credentials, and moto's
    endpoints: `AWS_ENDPOINT_URL_S3` = moto, `AWS_ENDPOINT_URL_LAMBDA` = motoserver.py's Invoke
    adapter (which routes a deployed function's name to its emulator by the function map), so a
    function invoking another one (the train coordinator's gradient tasks) reaches it as the
    state machine does. `emulators` and `logs` are keyed by the function's logical id."""

    def __init__(self, state_machines: list[str], *, template: Path = deploy.TEMPLATE,
                 parameters: dict[str, str] | None = None, crate: Path = harness.ROOT,
                 target: Path | None = None, work: Path | None = None,
                 stack_name: str = "digits-local") -> None:
        self.state_machines = state_machines
        self.template = template
        self.parameters = {**DEFAULT_PARAMETERS, **(parameters or {})}
        self.crate = crate
        self.target = target or (crate / "target")
        self.work = work or Path(tempfile.mkdtemp(prefix="workflow-run-"))
        self.stack_name = stack_name
        self.moto: harness.Started | None = None
        self.endpoint = ""
        self.lambda_endpoint = ""
        self.deployment: deploy.Deployment | None = None
        self.client: Callable[[str], Any] = lambda service: None
        self.emulators: dict[str, harness.Started] = {}
        self.logs: dict[str, Path] = {}

    def __enter__(self) -> Local:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        function_map = self.work / "functions.json"
        self.moto, self.endpoint = harness.start_moto(self.work, function_map=function_map)
        self.lambda_endpoint = harness.moto_lambda_endpoint(self.work)
        self.deployment = deploy.deploy(self.endpoint, self.stack_name, self.parameters,
                                        template_path=self.template, leave_out_types=LOCAL_LEAVE_OUT)
        self.client = deploy.clients(self.endpoint)
        sfn = self.client("stepfunctions")
        names = deploy.emulator_names(self.deployment, self.template)
        called: list[str] = []
        for state_machine in self.state_machines:
            definition = sfn.describe_state_machine(stateMachineArn=self.arn(state_machine))["definition"]
            called += [d for d in called_functions(definition, names) if d not in called]
        logical = {physical: lid for lid, physical in self.deployment.physical.items()}
        binaries = [names[d] for d in called]
        in_workspace = (self.crate / "Cargo.toml").is_file() and "[workspace]" in (self.crate / "Cargo.toml").read_text()
        packages = workspace_packages(self.crate) if in_workspace else {}
        specs = {}
        for deployed in called:
            binary = names[deployed]
            select = ["--package", packages[binary], "--bin", binary] if binary in packages else []
            # Two functions of one binary (TrainWorkflow's coordinator and worker): a log each.
            log = f"watch-{binary}" if binaries.count(binary) == 1 else f"watch-{logical[deployed]}"
            specs[deployed] = {"name": binary, "cwd": self.crate, "select": select,
                               "target": self.target, "log": log}
            self.logs[logical[deployed]] = self.work / f"{log}.log"
        started = harness.start_function_emulators(
            self.work, self.endpoint, specs, function_map,
            extra_env={**LOCAL_ENV, "AWS_ENDPOINT_URL_S3": self.endpoint,
                       "AWS_ENDPOINT_URL_LAMBDA": self.lambda_endpoint})
        self.emulators = {logical[deployed]: emulator for deployed, emulator in zip(specs, started)}

    def stop(self) -> None:
        for emulator in self.emulators.values():
            emulator.stop()
        self.emulators = {}
        if self.moto is not None:
            self.moto.stop()
            self.moto = None

    def arn(self, state_machine: str) -> str:
        """A state machine's ARN, by its logical id."""
        assert self.deployment is not None, "Local.start() first"
        if state_machine not in self.deployment.physical:
            raise RunError(f"{self.template}: no resource {state_machine} (a state machine) in the stack")
        return self.deployment.physical[state_machine]

    def output(self, name: str) -> str:
        """A stack output's value; RunError naming it if the stack has no such output."""
        assert self.deployment is not None, "Local.start() first"
        if name not in self.deployment.outputs:
            raise RunError(f"the stack has no output {name} (outputs: {sorted(self.deployment.outputs)})")
        return self.deployment.outputs[name]

    def put(self, puts: dict[Path, str], bucket_output: str = "ModelBucketName") -> None:
        """Uploads local files to the bucket named by the stack output `bucket_output`."""
        if not puts:
            return
        try:
            bucket = self.output(bucket_output)
        except RunError as e:
            raise RunError(f"--put needs the stack output {bucket_output}: {e}") from None
        for local, key in puts.items():
            if not Path(local).is_file():
                raise RunError(f"--put {local}={key}: {local} is not a file")
            self.client("s3").upload_file(str(local), bucket, key)

    def fill(self, payload: str) -> str:
        """`payload` with each `{Output}` replaced by the stack's output; it must then be JSON."""
        def one(m: re.Match[str]) -> str:
            return self.output(m.group(1))

        try:
            execution_input = _PLACEHOLDER.sub(one, payload)
        except RunError as e:
            raise RunError(f"--input: {e}") from None
        try:
            json.loads(execution_input)
        except json.JSONDecodeError as e:
            raise RunError(f"--input is not JSON ({e}): {execution_input}") from e
        return execution_input

    def start_execution(self, state_machine: str, payload: str) -> str:
        """StartExecution (always named: moto names an unnamed one `None`); its ARN."""
        return self.client("stepfunctions").start_execution(
            stateMachineArn=self.arn(state_machine), name=uuid.uuid4().hex,
            input=self.fill(payload))["executionArn"]

    def wait(self, execution: str, timeout: float) -> dict[str, Any]:
        """describe_execution's answer once the execution is no longer RUNNING; an execution
        still running after `timeout` seconds is stopped and RunError raised."""
        return wait_for(self.client("stepfunctions"), execution, timeout)

    def execute(self, state_machine: str, payload: str, timeout: float = 600) -> dict[str, Any]:
        """Starts an execution and waits for it (any end status)."""
        return self.wait(self.start_execution(state_machine, payload), timeout)


def run_workflow(state_machine: str, *, template: Path = deploy.TEMPLATE,
                 parameters: dict[str, str] | None = None, puts: dict[Path, str] | None = None,
                 payload: str = "{}", bucket_output: str = "ModelBucketName",
                 crate: Path = harness.ROOT, target: Path | None = None,
                 timeout: float = 600, work: Path | None = None,
                 inspect: Callable[[Any, deploy.Deployment], None] | None = None) -> dict[str, Any]:
    """Does what the module's doc says; returns describe_execution's answer (any status).
    `inspect(client, deployment)`, if given, runs after the execution and before everything
    is stopped (to read what the functions wrote)."""
    with Local([state_machine], template=template, parameters=parameters, crate=crate,
               target=target, work=work) as local:
        local.put(puts or {}, bucket_output)
        described = local.execute(state_machine, payload, timeout)
        if inspect is not None:
            assert local.deployment is not None
            inspect(local.client, local.deployment)
        return described


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--state-machine", required=True, help="its logical id in the template")
    parser.add_argument("--template", type=Path, default=deploy.TEMPLATE)
    parser.add_argument("--parameter", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--put", action="append", default=[], metavar="LOCAL=KEY")
    parser.add_argument("--put-dir", action="append", default=[], metavar="DIR=PREFIX",
                        help="every file under DIR, to PREFIX/<its path under DIR>")
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

    puts = {Path(k): v for k, v in pairs(args.put, "--put").items()}
    for directory, prefix in pairs(args.put_dir, "--put-dir").items():
        files = sorted(p for p in Path(directory).rglob("*") if p.is_file())
        if not files:
            parser.error(f"--put-dir {directory}={prefix}: no files under {directory}")
        puts.update({p: f"{prefix.rstrip('/')}/{p.relative_to(directory).as_posix()}" for p in files})
    try:
        described = run_workflow(
            args.state_machine, template=args.template, parameters=pairs(args.parameter, "--parameter"),
            puts=puts, payload=args.input,
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
