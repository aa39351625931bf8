#!/usr/bin/env python3
"""The score function under the real Lambda emulator, on a real S3 server (make test-score).

1. publish the digits test model into a local store; start s3s-fs on a free loopback port
   (bucket `scoring-bucket`, as in infra/events/s3-score/*.json) and the predict binary
   (plain HTTP, same model) to compare answers with;
2. upload the inputs the fixtures name: a CSV with bad rows, the same rows gzip-compressed,
   JSON Lines, a key that needs URL-decoding, a raw key for a direct invocation, a file with
   no usable header, a key outside INPUT_PREFIX, and a large CSV (SCORE_LARGE_MB, default
   256) bigger than the memory cap (SCORE_RSS_CAP_MB, default 128);
3. start `cargo lambda watch` (INPUT_PREFIX=incoming/, OUTPUT_PREFIX=scored/) and send each
   fixture with `cargo lambda invoke --data-file`;
4. read every output back and compare it row by row with predict's answers (POST /predict
   with `instances`), the errors files line by line, the manifests; the redelivered event
   must give the same bytes; the large file's peak RSS (VmHWM of the function's process)
   must stay under the cap;
5. stop what it started (each in its own process group, by id).
"""

import csv
import gzip
import hashlib
import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import boto3
from botocore.config import Config

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
EVENTS = os.path.join(ROOT, "infra", "events", "s3-score")
BUCKET = "scoring-bucket"
ACCESS, SECRET = "score-test-key", "score-test-secret-0123456789"
LARGE_MB = int(os.environ.get("SCORE_LARGE_MB", "256"))
CAP_MB = int(os.environ.get("SCORE_RSS_CAP_MB", "128"))

started = []  # Popen objects, each the leader of its own process group


def log(msg):
    print(f"test-score: {msg}", flush=True)


def fail(msg, work=None):
    print(f"test-score: FAIL: {msg}", file=sys.stderr, flush=True)
    if work:
        for name in sorted(os.listdir(work)):
            if name.endswith(".log"):
                with open(os.path.join(work, name), errors="replace") as f:
                    tail = f.read()[-4000:]
                print(f"--- {name} (tail) ---\n{tail}", file=sys.stderr)
    raise SystemExit(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd, logfile, env=None):
    out = open(logfile, "w")
    p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                         start_new_session=True, cwd=ROOT)
    started.append(p)
    return p


def stop_all():
    for p in reversed(started):
        if p.poll() is not None:
            continue
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()


def wait_port(port, proc, what, seconds):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited during start-up")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} not ready within {seconds} s")


def target_dir():
    meta = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"],
                          cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return json.loads(meta)["target_directory"]


def digits_rows():
    with open(os.path.join(ROOT, "data", "digits.csv")) as f:
        r = csv.reader(f)
        header = next(r)
        rows = [row for row in r]
    return header, rows


def descendants(pid):
    """Every process below pid (from /proc)."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in children.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def function_pid(watch_pid, exe):
    """The function's process below the emulator (a rebuild while it runs leaves its exe
    link as "<path> (deleted)")."""
    for p in descendants(watch_pid):
        try:
            if os.readlink(f"/proc/{p}/exe").removesuffix(" (deleted)") == exe:
                return p
        except OSError:
            pass
    return None


def vm_hwm_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM")


def main():
    work = tempfile.mkdtemp(prefix="test-score-")
    try:
        run(work)
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001 - report with the logs
        fail(f"{type(e).__name__}: {e}", work)
    finally:
        stop_all()
        subprocess.run(["rm", "-rf", work], check=False)


def run(work):
    tdir = target_dir()
    # 1. The model, the S3 server, predict.
    store = os.path.join(work, "store")
    subprocess.run(["cargo", "run", "--quiet", "-p", "predict", "--example", "test_model", "--", store],
                   cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    model_uri = os.path.join(store, "digits")
    s3_port = free_port()
    data = os.path.join(work, "s3")
    os.makedirs(os.path.join(data, BUCKET))
    s3s = start(["s3s-fs", "--host", "127.0.0.1", "--port", str(s3_port), "--access-key", ACCESS,
                 "--secret-key", SECRET, data], os.path.join(work, "s3s-fs.log"))
    wait_port(s3_port, s3s, "s3s-fs", 20)
    endpoint = f"http://127.0.0.1:{s3_port}"
    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=ACCESS,
                      aws_secret_access_key=SECRET, region_name="us-east-1",
                      config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}))

    predict_port = free_port()
    env = dict(os.environ, MODEL_URI=model_uri, HOST="127.0.0.1", PORT=str(predict_port),
               RUST_LOG="warn")
    env.pop("AWS_LAMBDA_RUNTIME_API", None)
    pred = start([os.path.join(tdir, "debug", "predict")], os.path.join(work, "predict.log"), env)
    wait_port(predict_port, pred, "predict", 30)

    def predict(rows):
        out = []
        for i in range(0, len(rows), 500):
            body = json.dumps({"instances": rows[i:i + 500]}).encode()
            req = urllib.request.Request(f"http://127.0.0.1:{predict_port}/predict", data=body,
                                         headers={"content-type": "application/json"})
            with urllib.request.urlopen(req, timeout=30) as r:
                out.extend(json.load(r)["predictions"])
        return out

    # 2. Inputs.
    header, rows = digits_rows()
    feat = [h for h in header if h != "label"]
    rnd = random.Random(7)
    # Columns shuffled, an id column, the label kept as an extra column.
    order = header[:]
    rnd.shuffle(order)
    cols = ["id"] + order
    good, lines, bad = [], [",".join(cols)], {}
    for i, row in enumerate(rows[:600]):
        rec = dict(zip(header, row))
        rec["id"] = f"d{i}"
        line_no = len(lines) + 1
        if i % 97 == 13:
            rec["pixel_5"] = "n/a"
            bad[line_no] = ("pixel_5", 'not a number: "n/a"')
        elif i % 97 == 40:
            rec["pixel_9"] = ""
            bad[line_no] = ("pixel_9", "missing value")
        elif i % 97 == 77:
            rec["pixel_1"] = "inf"
            bad[line_no] = ("pixel_1", 'not finite: "inf"')
        else:
            good.append((rec["id"], [float(rec[f]) for f in feat]))
        lines.append(",".join(rec[c] for c in cols))
    lines.append("d999,1,2")
    bad[len(lines)] = ("", f"3 fields, the header has {len(cols)}")
    csv_bytes = ("\n".join(lines) + "\n").encode()
    s3.put_object(Bucket=BUCKET, Key="incoming/digits.csv", Body=csv_bytes)
    s3.put_object(Bucket=BUCKET, Key="incoming/batch/digits.csv.gz", Body=gzip.compress(csv_bytes))
    s3.put_object(Bucket=BUCKET, Key="incoming/with space&more.csv", Body=csv_bytes)
    s3.put_object(Bucket=BUCKET, Key="elsewhere/digits.csv", Body=csv_bytes)
    s3.put_object(Bucket=BUCKET, Key="incoming/raw a+b%2B.csv", Body=csv_bytes)
    jl = []
    for rid, x in good[:50]:
        obj = {"id": rid}
        obj.update(dict(zip(feat, x)))
        jl.append(json.dumps(obj))
    jl.append('{"id": "broken", "pixel_0": true}')
    s3.put_object(Bucket=BUCKET, Key="incoming/rows.jsonl", Body=("\n".join(jl) + "\n").encode())

    want = dict(zip((r for r, _ in good), predict([x for _, x in good])))
    log(f"predict answered {len(want)} rows")

    # 3. The emulator.
    lport = free_port()
    exe = os.path.realpath(os.path.join(tdir, "debug", "score"))
    watch_env = dict(os.environ)
    watch_env.pop("AWS_LAMBDA_RUNTIME_API", None)
    watch = start(["cargo", "lambda", "watch", "--package", "score", "--bin", "score",
                   "--ignore-changes", "--invoke-address", "127.0.0.1", "--invoke-port", str(lport),
                   "--env-var", f"MODEL_URI={model_uri}",
                   "--env-var", "INPUT_PREFIX=incoming/", "--env-var", "OUTPUT_PREFIX=scored/",
                   "--env-var", "ID_COLUMNS=id", "--env-var", "RUST_LOG=info",
                   "--env-var", f"AWS_ENDPOINT_URL={endpoint}",
                   "--env-var", f"AWS_ACCESS_KEY_ID={ACCESS}",
                   "--env-var", f"AWS_SECRET_ACCESS_KEY={SECRET}",
                   "--env-var", "AWS_REGION=us-east-1"],
                  os.path.join(work, "watch.log"), watch_env)
    wait_port(lport, watch, "cargo lambda watch", 120)

    def invoke(fixture, expect_ok=True):
        t0 = time.time()
        p = subprocess.run(["cargo", "lambda", "invoke", "score", "--invoke-address", "127.0.0.1",
                            "--invoke-port", str(lport), "--data-file", os.path.join(EVENTS, fixture)],
                           cwd=ROOT, capture_output=True, text=True, timeout=900)
        if expect_ok and p.returncode != 0:
            fail(f"invoke {fixture}: {p.stdout}{p.stderr}", work)
        if not expect_ok:
            return p, time.time() - t0
        return json.loads(p.stdout), time.time() - t0

    def get(key):
        return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()

    def exists(key):
        try:
            s3.head_object(Bucket=BUCKET, Key=key)
            return True
        except s3.exceptions.ClientError:
            return False

    def check_csv(key, expected_rows):
        text = get(key).decode()
        r = csv.reader(io.StringIO(text))
        head = next(r)
        classes = [str(c) for c in range(10)]
        assert head == ["id", "label"] + [f"proba_{c}" for c in classes], head
        n = 0
        for row in r:
            w = want[row[0]]
            assert row[1] == w["label"], (row[0], row[1], w)
            got = [float(x) for x in row[2:]]
            assert got == w["probabilities"], (row[0], got, w["probabilities"])
            n += 1
        assert n == expected_rows, (key, n, expected_rows)
        return text

    def check_errors(key):
        text = get(key).decode()
        r = list(csv.reader(io.StringIO(text)))
        assert r[0] == ["line", "column", "reason"], r[0]
        got = {int(l): (c, reason) for l, c, reason in r[1:]}
        assert got == bad, (got, bad)

    def check_manifest(key, scored, refused, gz=False):
        m = json.loads(get(key))
        assert m["rows_scored"] == scored and m["rows_refused"] == refused, m
        assert m["model"]["name"] == "digits" and len(m["model"]["model_id"]) == 64, m
        assert m["gzip"] == gz, m
        assert m["input_etag"], m
        return m

    # Single object.
    res, secs = invoke("single.json")
    assert [r["status"] for r in res["records"]] == ["scored"], res
    first = check_csv("scored/digits.csv.out.csv", len(good))
    check_errors("scored/digits.csv.errors.csv")
    check_manifest("scored/digits.csv.manifest.json", len(good), len(bad))
    log(f"ok  single object: {len(good)} rows equal to predict's, {len(bad)} refused with line and reason ({secs:.1f} s)")

    # Redelivered event: the same output, byte for byte.
    res, _ = invoke("single.json")
    assert res["records"][0]["status"] == "scored", res
    assert get("scored/digits.csv.out.csv").decode() == first, "redelivery changed the output"
    log("ok  redelivered event: the same output")

    # Several records: gzip, JSON Lines, a URL-encoded key.
    res, secs = invoke("several-records.json")
    assert [r["status"] for r in res["records"]] == ["scored"] * 3, res
    assert check_csv("scored/batch/digits.csv.gz.out.csv", len(good)) == first
    check_errors("scored/batch/digits.csv.gz.errors.csv")
    check_manifest("scored/batch/digits.csv.gz.manifest.json", len(good), len(bad), gz=True)
    assert check_csv("scored/with space&more.csv.out.csv", len(good)) == first
    out = [json.loads(l) for l in get("scored/rows.jsonl.out.jsonl").decode().splitlines()]
    assert len(out) == 50, len(out)
    for o in out:
        w = want[o["id"]]
        assert o["label"] == w["label"], o
        assert [o[f"proba_{c}"] for c in range(10)] == w["probabilities"], o
    errs = get("scored/rows.jsonl.errors.csv").decode().splitlines()
    assert errs[1].startswith("51,pixel_0,not a number: a boolean"), errs
    log(f"ok  several records: gzip, JSON Lines and an encoded key, all equal to predict's ({secs:.1f} s)")

    # The same object through EventBridge (the template's trigger): the same output.
    res, _ = invoke("eventbridge-object-created.json")
    assert [r["status"] for r in res["records"]] == ["scored"], res
    assert check_csv("scored/batch/digits.csv.gz.out.csv", len(good)) == first
    log("ok  EventBridge Object Created event: the same output")

    # A direct invocation (ScoreWorkflow's shape): the key is taken literally, `+` and `%2B` too.
    res, _ = invoke("direct.json")
    assert [r["status"] for r in res["records"]] == ["scored"], res
    assert res["records"][0]["input"] == f"s3://{BUCKET}/incoming/raw a+b%2B.csv", res
    assert check_csv("scored/raw a+b%2B.csv.out.csv", len(good)) == first
    check_manifest("scored/raw a+b%2B.csv.manifest.json", len(good), len(bad))
    log("ok  direct invocation: a raw key with a space, `+` and `%2B` scored as is")

    # Keys outside the prefix (and the output prefix itself) are ignored.
    res, _ = invoke("outside-prefix.json")
    assert [r["status"] for r in res["records"]] == ["ignored", "ignored"], res
    assert not exists("scored/digits.csv.out.csv.out.csv")
    log("ok  keys outside INPUT_PREFIX ignored, nothing written")

    # An unreadable file fails the invocation, writes nothing.
    s3.put_object(Bucket=BUCKET, Key="incoming/digits.csv", Body=b"id,a,b\n1,2,3\n")
    s3.delete_object(Bucket=BUCKET, Key="scored/digits.csv.out.csv")
    s3.delete_object(Bucket=BUCKET, Key="scored/digits.csv.manifest.json")
    p, _ = invoke("single.json", expect_ok=False)
    # (cargo lambda wraps the message in a box: unwrap it.)
    text = " ".join((p.stdout + p.stderr).replace("\u2502", " ").split())
    assert p.returncode != 0 and "incoming/digits.csv: line 1: the header lacks 64 feature column(s)" in text, text
    assert not exists("scored/digits.csv.out.csv") and not exists("scored/digits.csv.manifest.json")
    log("ok  unreadable file: the invocation fails naming the problem, nothing written")

    # 4. A file larger than the memory cap.
    line_rows = [",".join(["id"] + feat)]
    body = []
    for i, (_, x) in enumerate(good):
        body.append(f"r{i}," + ",".join(str(int(v)) for v in x))
    chunk = ("\n".join(body) + "\n").encode()
    target = LARGE_MB << 20
    mpu = s3.create_multipart_upload(Bucket=BUCKET, Key="incoming/large/big.csv")
    parts, size, part, buf = [], 0, 1, bytearray((line_rows[0] + "\n").encode())
    while size + len(buf) < target:
        buf += chunk
        if len(buf) >= 16 << 20:
            r = s3.upload_part(Bucket=BUCKET, Key="incoming/large/big.csv", UploadId=mpu["UploadId"],
                               PartNumber=part, Body=bytes(buf))
            parts.append({"ETag": r["ETag"], "PartNumber": part})
            size += len(buf)
            part += 1
            buf = bytearray()
    if buf:
        r = s3.upload_part(Bucket=BUCKET, Key="incoming/large/big.csv", UploadId=mpu["UploadId"],
                           PartNumber=part, Body=bytes(buf))
        parts.append({"ETag": r["ETag"], "PartNumber": part})
        size += len(buf)
    s3.complete_multipart_upload(Bucket=BUCKET, Key="incoming/large/big.csv", UploadId=mpu["UploadId"],
                                 MultipartUpload={"Parts": parts})
    rows_large = (size - len(line_rows[0]) - 1) // len(chunk) * len(body)
    res, secs = invoke("large.json")
    assert res["records"][0]["status"] == "scored", res
    assert res["records"][0]["rows_scored"] == rows_large, (res, rows_large)
    pid = function_pid(watch.pid, exe)
    if pid is None:
        fail(f"cannot find the function's process ({exe}) under cargo lambda watch", work)
    hwm_mb = vm_hwm_kib(pid) / 1024
    head = s3.head_object(Bucket=BUCKET, Key="scored/large/big.csv.out.csv")
    log(f"ok  large file: {size / 2**20:.0f} MiB in, {head['ContentLength'] / 2**20:.0f} MiB out, "
        f"{rows_large} rows in {secs:.1f} s; peak RSS of the function {hwm_mb:.0f} MiB (cap {CAP_MB} MiB)")
    if hwm_mb >= CAP_MB:
        fail(f"peak RSS {hwm_mb:.0f} MiB is not under the cap of {CAP_MB} MiB", work)
    # Spot-check the large output's first rows against predict.
    first_rows = s3.get_object(Bucket=BUCKET, Key="scored/large/big.csv.out.csv",
                               Range="bytes=0-65535")["Body"].read().decode().splitlines()[1:20]
    xs = [[float(v) for v in b.split(",")[1:]] for b in body[:19]]
    for line, w in zip(first_rows, predict(xs)):
        f = line.split(",")
        assert [float(v) for v in f[2:]] == w["probabilities"], (line, w)
    log("all passed")


if __name__ == "__main__":
    main()
