"""moto's server for the workflow tests, with its Step Functions interpreter on.

Plain `moto_server` runs a state machine's `arn:aws:states:::lambda:invoke` against its own
Lambda backend (it gives the interpreter's boto3 clients `endpoint_url=localhost:MOTO_PORT`,
which beats `AWS_ENDPOINT_URL_LAMBDA`), and that backend runs functions only in Docker images
pulled from a registry. So this launcher starts the same server (`ThreadedMotoServer`) inside
moto's in-process mock (`mock_aws`): the interpreter's clients then get no endpoint_url, boto3
takes `AWS_ENDPOINT_URL_LAMBDA` from the environment, and moto's documented passthrough setting
(`core.passthrough.urls`) lets exactly those Lambda calls leave the process, to
`cargo lambda watch`. Every other call the interpreter makes (S3 ItemReader, ...) stays inside
moto. Nothing of moto is patched.

cargo-lambda 1.9's emulator answers Invoke unlike AWS Lambda in two ways that matter to the
interpreter: a function error comes back as HTTP 500 (AWS: 200 with `X-Amz-Function-Error:
Unhandled`) with no `x-amzn-RequestId` (moto's `lambda:invoke` integration then fails with a
KeyError, i.e. `States.Runtime`, which no Retry or Catch matches), and it knows functions by name
only (a function ARN is a 404). With `--lambda-emulator URL` this process also runs a small Invoke
adapter on a free loopback port and points `AWS_ENDPOINT_URL_LAMBDA` at it: it forwards each
Invoke to the emulator with the function's name, and answers a function error the way AWS Lambda
does, so Retry and Catch see the function's `errorType` as on AWS.

A stack's functions have generated names (`digits-ScoreFunction-1A2B3C`) while the emulator
serves binaries by their own names (`score`): `--function-map FILE` names a JSON object, read
again at each Invoke (the tests write it after deploying), whose entries are either
`"deployed name": "emulator name"` (on the `--lambda-emulator`), or `"deployed name": {"url":
"http://127.0.0.1:PORT", "name": "emulator name"}` (an emulator of that function's own, started
with that function's environment).

A function that itself invokes another (train-worker's `finish` sending gradient tasks to the
worker) must be pointed at the adapter too, not at this server's port: moto's own Lambda API
there answers every Invoke of a function it holds without running it (`Simple Lambda happy
path OK`, with `use_docker` off). `--lambda-endpoint-file FILE` gets the adapter's URL (written
before the port file), for such functions' `AWS_ENDPOINT_URL_LAMBDA`.

Usage: python motoserver.py [--host 127.0.0.1] [--port 0] [--port-file FILE] [--lambda-emulator URL]
  [--function-map FILE] [--lambda-endpoint-file FILE]
Prints `motoserver: listening on HOST:PORT` once it accepts requests; stops on SIGTERM / SIGINT.
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import json
import os
import re
import signal
import sys
import threading
import urllib.parse
import uuid

# Invoke payloads are at most 6 MB on AWS (synchronous invocation); refuse more before reading.
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
# The longest a function may take through the adapter (the emulator enforces no timeout).
INVOKE_TIMEOUT_SECONDS = 900
INVOKE_PATH = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations$")
# The function map is a few names; refuse a file larger than this before reading it.
MAX_FUNCTION_MAP_BYTES = 1024 * 1024


def function_name(raw: str) -> str:
    """The function name in an Invoke path segment: a name, or a full or partial ARN
    (`arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]`, `ACCOUNT:function:NAME`)."""
    name = urllib.parse.unquote(raw)
    parts = name.split(":")
    if "function" in parts:
        after = parts[parts.index("function") + 1 :]
        if after:
            return after[0]
    return name


class InvokeAdapter(http.server.BaseHTTPRequestHandler):
    """Forwards Lambda Invoke calls to `cargo lambda watch`, answering as AWS Lambda does."""

    emulator: urllib.parse.SplitResult | None
    function_map: str | None = None
    protocol_version = "HTTP/1.1"

    def route(self, name: str) -> tuple[urllib.parse.SplitResult | None, str]:
        """The emulator and the name there of a deployed function (unmapped: the default one)."""
        if not self.function_map:
            return self.emulator, name
        try:
            with open(self.function_map, "rb") as f:
                raw = f.read(MAX_FUNCTION_MAP_BYTES + 1)
        except FileNotFoundError:
            return self.emulator, name
        if len(raw) > MAX_FUNCTION_MAP_BYTES:
            raise ValueError(f"{self.function_map}: over {MAX_FUNCTION_MAP_BYTES} bytes")
        mapping = json.loads(raw)
        if not isinstance(mapping, dict):
            raise ValueError(f"{self.function_map}: not a JSON object")
        entry = mapping.get(name, name)
        if isinstance(entry, str):
            return self.emulator, entry
        if isinstance(entry, dict) and isinstance(entry.get("url"), str) and isinstance(entry.get("name"), str):
            url = urllib.parse.urlsplit(entry["url"])
            if url.scheme == "http" and url.hostname and url.port:
                return url, entry["name"]
        raise ValueError(f"{self.function_map}: entry {name!r}: expected a name or "
                         '{"url": "http://HOST:PORT", "name": NAME}')

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib name)
        sys.stderr.write("lambda-adapter: " + (format % args) + "\n")

    def reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def error(self, status: int, code: str, message: str) -> None:
        body = json.dumps({"Type": "User", "message": message}).encode()
        self.reply(status, body, {"content-type": "application/json", "x-amzn-errortype": code,
                                  "x-amzn-requestid": str(uuid.uuid4())})

    def do_POST(self) -> None:  # noqa: N802 (stdlib name)
        path = urllib.parse.urlsplit(self.path)
        match = INVOKE_PATH.match(path.path)
        if not match:
            self.error(404, "ResourceNotFoundException", f"not an Invoke path: {path.path}")
            return
        try:
            length = int(self.headers.get("content-length", "0"))
        except ValueError:
            self.error(400, "InvalidRequestContentException", "bad content-length")
            return
        if length < 0 or length > MAX_PAYLOAD_BYTES:
            self.error(413, "RequestTooLargeException",
                       f"payload of {length} bytes; at most {MAX_PAYLOAD_BYTES}")
            return
        payload = self.rfile.read(length)
        try:
            emulator, name = self.route(function_name(match.group(1)))
        except (OSError, ValueError) as e:
            self.error(500, "ServiceException", f"function map: {e}")
            return
        if emulator is None:
            self.error(404, "ResourceNotFoundException",
                       f"Function not found: {name} (not in {self.function_map})")
            return
        target = f"/2015-03-31/functions/{urllib.parse.quote(name, safe='')}/invocations"
        conn = http.client.HTTPConnection(emulator.hostname, emulator.port,
                                          timeout=INVOKE_TIMEOUT_SECONDS)
        try:
            conn.request("POST", target, body=payload,
                         headers={"content-type": "application/json"})
            response = conn.getresponse()
            body = response.read(MAX_PAYLOAD_BYTES + 1)
            status = response.status
        except OSError as e:
            self.error(502, "ServiceException", f"emulator at {emulator.geturl()}: {e}")
            return
        finally:
            conn.close()
        request_id = response.getheader("lambda-runtime-aws-request-id") or str(uuid.uuid4())
        headers = {"content-type": "application/json", "x-amzn-requestid": request_id,
                   "x-amz-executed-version": "$LATEST"}
        if len(body) > MAX_PAYLOAD_BYTES:
            # AWS fails an invocation whose response is over the synchronous payload limit.
            self.reply(200, json.dumps({
                "errorType": "Function.ResponseSizeTooLarge",
                "errorMessage": f"response over {MAX_PAYLOAD_BYTES} bytes"}).encode(),
                {**headers, "x-amz-function-error": "Unhandled"})
        elif status == 200:
            self.reply(200, body, headers)
        elif status == 500:
            # A function error: AWS answers 200 and names it in X-Amz-Function-Error.
            self.reply(200, body, {**headers, "x-amz-function-error": "Unhandled"})
        elif status == 404:
            self.error(404, "ResourceNotFoundException",
                       f"Function not found: {name} (not served by the emulator)")
        else:
            self.error(502, "ServiceException",
                       f"emulator answered {status} for {name}: {body[:500]!r}")


def start_adapter(host: str, emulator: str | None, function_map: str | None = None) -> str:
    """Starts the Invoke adapter on a free port of `host`; returns its URL."""
    parsed = urllib.parse.urlsplit(emulator) if emulator else None
    if parsed is not None and (parsed.scheme != "http" or not parsed.hostname or not parsed.port):
        raise SystemExit(f"motoserver: --lambda-emulator {emulator!r}: expected http://HOST:PORT")
    handler = type("Adapter", (InvokeAdapter,), {"emulator": parsed, "function_map": function_map})
    server = http.server.ThreadingHTTPServer((host, 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://{host}:{server.server_address[1]}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument("--port-file", help="write the port here once listening")
    parser.add_argument("--lambda-emulator", help="cargo lambda watch's URL (http://HOST:PORT)")
    parser.add_argument("--function-map", help='JSON file {"deployed name": "emulator name"}')
    parser.add_argument("--lambda-endpoint-file",
                        help="write the Invoke adapter's URL here (with --lambda-emulator or --function-map)")
    args = parser.parse_args()

    if args.lambda_emulator or args.function_map:
        os.environ["AWS_ENDPOINT_URL_LAMBDA"] = start_adapter(args.host, args.lambda_emulator,
                                                            args.function_map)
    lambda_endpoint = os.environ.get("AWS_ENDPOINT_URL_LAMBDA", "")
    if args.lambda_endpoint_file:
        if not (args.lambda_emulator or args.function_map):
            parser.error("--lambda-endpoint-file needs --lambda-emulator or --function-map (no adapter runs)")
        with open(args.lambda_endpoint_file + ".tmp", "w", encoding="utf-8") as f:
            f.write(f"{lambda_endpoint}\n")
        os.replace(args.lambda_endpoint_file + ".tmp", args.lambda_endpoint_file)
    passthrough = [re.escape(lambda_endpoint.rstrip("/")) + "/.*"] if lambda_endpoint else []

    # Imported here so that `--help` works without moto.
    from moto import mock_aws
    from moto.server import ThreadedMotoServer

    config = {
        "stepfunctions": {"execute_state_machine": True},
        # AWS managed policies (AWSLambdaBasicExecutionRole, ...) exist, as SAM's roles expect.
        "iam": {"load_aws_managed_policies": True},
        # moto's Lambda runs functions in Docker images it pulls; the tests never ask it to.
        "lambda": {"use_docker": False},
        "core": {"passthrough": {"urls": passthrough, "services": []}},
    }
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    with mock_aws(config=config):
        server = ThreadedMotoServer(ip_address=args.host, port=args.port, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        # Read by moto where it builds URLs pointing back at itself.
        os.environ["MOTO_PORT"] = str(port)
        if args.port_file:
            with open(args.port_file + ".tmp", "w", encoding="utf-8") as f:
                f.write(f"{port}\n")
            os.replace(args.port_file + ".tmp", args.port_file)
        print(f"motoserver: listening on {host}:{port}", flush=True)
        if lambda_endpoint:
            print(f"motoserver: Lambda calls go to {lambda_endpoint}", flush=True)
        stop.wait()
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
