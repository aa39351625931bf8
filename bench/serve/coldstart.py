"""Cold start: spawn a server, then POST the original's body to it as fast as a socket can
retry, and time spawn -> first 200. Prints the median (and all runs) in milliseconds.

usage: coldstart.py RUNS PORT BODY_FILE -- COMMAND...   (environment passes through)
Each run's process is one this script started; it is terminated by its id afterwards.
"""

import socket
import statistics
import subprocess
import sys
import time


def first_200(port: int, body: bytes, deadline: float) -> bool:
    req = (
        b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(req)
                head = s.recv(16)
                if head.startswith(b"HTTP/1.1 200"):
                    return True
        except OSError:
            time.sleep(0.0002)
    return False


def main() -> None:
    sep = sys.argv.index("--")
    runs, port, body_file = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    cmd = sys.argv[sep + 1 :]
    body = open(body_file, "rb").read().strip()
    times = []
    for _ in range(runs):
        start = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ok = first_200(port, body, start + 120)
        elapsed = (time.monotonic() - start) * 1e3
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if not ok:
            sys.exit(f"coldstart: no 200 from {cmd[0]} within 120 s")
        times.append(elapsed)
        time.sleep(0.2)
    print(f"{statistics.median(times):.2f} " + " ".join(f"{t:.2f}" for t in times))


if __name__ == "__main__":
    main()
