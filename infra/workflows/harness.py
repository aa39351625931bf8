"""Processes the workflow tests start: moto's server (motoserver.py) and `cargo lambda watch`.

Each runs in a session of its own (so it and its children are one process group whose id is its
pid), its output in a log file; `stop()` sends SIGTERM to that group only, waits, then SIGKILL.
Nothing here ever signals a process it did not start.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PROBE_FN = HERE / "probe-fn"
# The probe function's own target directory, so its build never waits on the workspace's lock.
PROBE_TARGET = ROOT / "target" / "workflows" / "probe-fn"
# Where start_moto's server writes its Invoke adapter's URL (in the work directory).
LAMBDA_ENDPOINT_FILE = "moto.lambda"


class HarnessError(Exception):
    """A process that would not start; the message names it and quotes its log."""


def free_port() -> int:
    """A port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    """True once something accepts TCP connections on 127.0.0.1:port (sends nothing)."""
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Started:
    """A process started in its own session."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, grace: float = 5.0) -> None:
        if not self.alive():
            return
        pgid = self.process.pid
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait(timeout=grace)


def start(name: str, argv: list[str], log: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> Started:
    with open(log, "wb") as out:
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True,
        )
    return Started(name, process, log)


def wait_until(started: Started, ready, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ready():
            return
        if not started.alive():
            raise HarnessError(f"{started.name} exited during start-up:\n{started.tail()}")
        time.sleep(0.1)
    started.stop()
    raise HarnessError(f"{started.name} was not ready within {seconds:.0f} s:\n{started.tail()}")


def start_moto(work: Path, lambda_emulator: str | None = None,
               function_map: Path | None = None) -> tuple[Started, str]:
    """motoserver.py on a free loopback port; returns it and its endpoint URL. With an Invoke
    adapter (`lambda_emulator` or `function_map`), `moto_lambda_endpoint(work)` is its URL."""
    port_file = work / "moto.port"
    argv = [sys.executable, str(HERE / "motoserver.py"), "--port-file", str(port_file)]
    if lambda_emulator:
        argv += ["--lambda-emulator", lambda_emulator]
    if function_map:
        argv += ["--function-map", str(function_map)]
    if lambda_emulator or function_map:
        argv += ["--lambda-endpoint-file", str(work / LAMBDA_ENDPOINT_FILE)]
    started = start("moto", argv, work / "moto.log")
    wait_until(started, port_file.exists, 60)
    port = int(port_file.read_text().strip())
    return started, f"http://127.0.0.1:{port}"


def moto_lambda_endpoint(work: Path) -> str:
    """The URL of the Invoke adapter of the moto server `start_moto(work, ...)` started: what
    a function that invokes another function needs as `AWS_ENDPOINT_URL_LAMBDA` (moto's own
    port would answer its Invoke without running anything; see motoserver.py)."""
    path = work / LAMBDA_ENDPOINT_FILE
    try:
        url = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise HarnessError(f"{path}: no Invoke adapter (start_moto without lambda_emulator or "
                           "function_map)") from None
    if not url.startswith("http://"):
        raise HarnessError(f"{path}: not an http:// URL: {url!r}")
    return url


def build_probe_fn(work: Path) -> None:
    """Builds the probe function first, so the emulator's first invocation does not wait on it."""
    env = {**os.environ, "CARGO_TARGET_DIR": str(PROBE_TARGET)}
    log = work / "probe-fn-build.log"
    with open(log, "wb") as out:
        done = subprocess.run(["cargo", "build", "--locked", "--quiet"], cwd=PROBE_FN, env=env,
                              stdout=out, stderr=subprocess.STDOUT, timeout=900, check=False)
    if done.returncode != 0:
        raise HarnessError(f"cargo build of {PROBE_FN} failed:\n{log.read_text()[-4000:]}")


def start_emulator(work: Path, env_vars: dict[str, str], concurrency: int = 2,
                   cwd: Path = PROBE_FN, target: Path = PROBE_TARGET, select: list[str] | None = None,
                   log_name: str = "watch") -> tuple[Started, str]:
    """`cargo lambda watch` on a free loopback port: by default the probe function's crate;
    `cwd`, `target` and `select` (e.g. ["--package", "score", "--bin", "score"]) for another.
    `env_vars` reach every function it serves (its `--env-var`)."""
    port = free_port()
    argv = ["cargo-lambda", "lambda", "watch", "--ignore-changes", "--invoke-address", "127.0.0.1",
            "--invoke-port", str(port), "--concurrency", str(concurrency), *(select or [])]
    for key, value in env_vars.items():
        argv += ["--env-var", f"{key}={value}"]
    started = start(f"cargo lambda watch ({log_name})", argv, work / f"{log_name}.log",
                    env={"CARGO_TARGET_DIR": str(target)}, cwd=cwd)
    wait_until(started, lambda: port_open(port), 120)
    return started, f"http://127.0.0.1:{port}"


def start_function_emulators(work: Path, endpoint: str, functions: dict[str, dict],
                             function_map: Path, extra_env: dict[str, str] | None = None,
                             ) -> list[Started]:
    """One `cargo lambda watch` per deployed function, each with that function's environment as
    the stack configured it (read back from moto's Lambda), plus `extra_env` (e.g. the S3
    endpoint); then writes `function_map` so motoserver.py routes each deployed name to its own
    emulator. `functions`: deployed name -> {"name": binary, and optional "cwd", "target",
    "select" as for start_emulator, "log": its log's name without `.log`, default
    `watch-<name>`: give one when two functions run the same binary}."""
    import deploy

    lam = deploy.clients(endpoint)("lambda")
    started: list[Started] = []
    routes = {}
    try:
        for deployed, spec in functions.items():
            config = lam.get_function(FunctionName=deployed)["Configuration"]
            env = {**(config.get("Environment") or {}).get("Variables", {}), **(extra_env or {})}
            emulator, url = start_emulator(
                work, env, cwd=spec.get("cwd", PROBE_FN), target=spec.get("target", PROBE_TARGET),
                select=spec.get("select"), log_name=spec.get("log", f"watch-{spec['name']}"))
            started.append(emulator)
            routes[deployed] = {"url": url, "name": spec["name"]}
    except BaseException:
        for emulator in started:
            emulator.stop()
        raise
    function_map.write_text(json.dumps(routes))
    return started
