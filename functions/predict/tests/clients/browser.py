"""The /docs page in a real headless browser (Debian's chromium), driven over the
DevTools protocol with websocket-client:
  - the page loads with no failed request, no console error and no script exception;
  - it lists every operation of /openapi.json;
  - a prediction sent from the page (the POST /predict example) is answered 200 and the
    answer is shown; so is a KServe V2 inference;
  - a screenshot is kept as a test artifact (ARTIFACT_DIR/docs.png).

The browser is started by this script, with its own temporary profile, and stopped by
its PID. Every wait is bounded.

Usage: browser.py BASE_URL ARTIFACT_DIR
"""

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

from websocket import create_connection

URL = sys.argv[1].rstrip("/")
ARTIFACTS = sys.argv[2]
DEADLINE = 30.0


class Browser:
    def __init__(self):
        exe = shutil.which("chromium") or shutil.which("chromium-browser")
        if not exe:
            raise SystemExit("browser: chromium is not installed (make tool-chromium)")
        self.profile = tempfile.mkdtemp(prefix="predict-docs-")
        self.proc = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--no-first-run", "--disable-extensions", "--disable-sync", "--remote-debugging-port=0",
             "--remote-debugging-address=127.0.0.1", f"--user-data-dir={self.profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Chromium writes the port it picked (and the browser target's path) here.
        port_file = os.path.join(self.profile, "DevToolsActivePort")
        deadline = time.monotonic() + DEADLINE
        while True:
            if os.path.exists(port_file):
                lines = open(port_file).read().split()
                if len(lines) >= 2:
                    break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise SystemExit("browser: chromium did not start its DevTools endpoint")
            time.sleep(0.05)
        self.ws = create_connection(f"ws://127.0.0.1:{lines[0]}{lines[1]}", timeout=DEADLINE)
        self.next_id = 0
        self.events = []

    def call(self, method, params=None, session=None):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)
        raise TimeoutError(method)

    def close(self):
        try:
            if getattr(self, "ws", None):
                try:
                    self.call("Browser.close")
                except Exception:  # the browser may already be gone
                    pass
                self.ws.close()
        finally:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            shutil.rmtree(self.profile, ignore_errors=True)


def main():
    spec = json.load(urllib.request.urlopen(URL + "/openapi.json", timeout=10))
    n_ops = sum(1 for item in spec["paths"].values() for m in item if m in ("get", "post"))
    failures = []
    b = Browser()
    try:
        target = b.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        s = b.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Network", "Runtime", "Log"):
            b.call(domain + ".enable", session=s)
        b.call("Emulation.setDeviceMetricsOverride",
               {"width": 1280, "height": 1400, "deviceScaleFactor": 1, "mobile": False}, session=s)
        b.call("Page.navigate", {"url": URL + "/docs"}, session=s)

        def evaluate(expr):
            r = b.call("Runtime.evaluate", {"expression": expr, "returnByValue": True}, session=s)
            if "exceptionDetails" in r:
                raise RuntimeError(f"{expr}: {r['exceptionDetails']}")
            return r["result"].get("value")

        def wait_for(expr, what):
            deadline = time.monotonic() + DEADLINE
            while time.monotonic() < deadline:
                v = evaluate(expr)
                if v:
                    return v
                time.sleep(0.1)
            raise TimeoutError(what)

        state = wait_for("document.body && document.body.dataset.ready", "the page to render")
        check(state == "true", f"page rendered (ready={state})", failures)
        rendered = evaluate("document.querySelectorAll('#ops .op').length")
        check(rendered == n_ops, f"every operation listed ({rendered} of {n_ops})", failures)

        # Send the /predict example from the page, as a person would.
        evaluate("document.querySelector('#op-post-predict').open = true;"
                 "document.querySelector('#op-post-predict button.send').click(); true")
        status = wait_for("document.querySelector('#op-post-predict .result').dataset.status", "the /predict answer")
        shown = evaluate("document.querySelector('#op-post-predict .result-body').textContent")
        check(status == "200", f"POST /predict from the page answered {status}", failures)
        try:
            answer = json.loads(shown)
            check(answer.get("predicted_class") == 0 and len(answer.get("probabilities", [])) == 10,
                  f"the answer is shown: predicted_class={answer.get('predicted_class')}", failures)
        except ValueError:
            check(False, f"the answer shown is JSON: {shown[:200]!r}", failures)

        infer = "#op-post-v2-models-name-infer"
        evaluate(f"document.querySelector('{infer}').open = true;"
                 f"document.querySelector('{infer} button.send').click(); true")
        status = wait_for(f"document.querySelector('{infer} .result').dataset.status", "the V2 answer")
        check(status == "200", f"POST /v2/models/{{name}}/infer from the page answered {status}", failures)

        evaluate("document.querySelector('#op-post-predict').scrollIntoView(); true")
        shot = b.call("Page.captureScreenshot", {"format": "png"}, session=s)
        path = os.path.join(ARTIFACTS, "docs.png")
        with open(path, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        check(os.path.getsize(path) > 10_000, f"screenshot saved to {path}", failures)

        # Anything that failed while the page loaded and worked.
        b.call("Runtime.evaluate", {"expression": "1"}, session=s)  # flush pending events
        bad = []
        requested = set()
        for e in b.events:
            m, p = e["method"], e.get("params", {})
            if m == "Network.requestWillBeSent":
                requested.add(p["request"]["url"])
            elif m == "Network.responseReceived" and p["response"]["status"] >= 400:
                bad.append(f"{p['response']['status']} {p['response']['url']}")
            elif m == "Network.loadingFailed":
                bad.append(f"failed: {p.get('errorText')} {p.get('blockedReason', '')}")
            elif m == "Runtime.exceptionThrown":
                bad.append(f"exception: {p['exceptionDetails'].get('text')}")
            elif m == "Runtime.consoleAPICalled" and p.get("type") == "error":
                bad.append(f"console error: {p.get('args')}")
            elif m == "Log.entryAdded" and p["entry"].get("level") == "error":
                bad.append(f"log error: {p['entry'].get('text')} {p['entry'].get('url', '')}")
        outside = [u for u in requested if not u.startswith(URL + "/") and not u.startswith("data:")]
        check(not outside, f"no request left this server: {outside}", failures)
        check(not bad, f"no failed request, console error or exception: {bad}", failures)
        expected = {URL + p for p in ("/docs", "/docs/app.js", "/docs/app.css", "/openapi.json")}
        check(expected <= requested, f"the page loaded its own assets: {sorted(requested)}", failures)
    finally:
        b.close()
    print(f"browser: {len(CHECKS) - len(failures)} passed, {len(failures)} failed")
    return 1 if failures else 0


CHECKS = []


def check(ok, what, failures):
    CHECKS.append(what)
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


if __name__ == "__main__":
    sys.exit(main())
