"""Slow readers against `gpuconv serve`: the server's resident memory while clients hold answers.

    python3 bench/slow_readers.py BINARY stall CLIENTS WIDTH HEIGHT [SERVE ARGS...]
    python3 bench/slow_readers.py BINARY read RATE CLIENTS WIDTH HEIGHT [SERVE ARGS...]

Each client posts a small PNG of WIDTH x HEIGHT (a flat pattern: tens of KB) asking for a PGM
answer, then either stops reading after the answer's head (`stall`) or reads it at RATE bytes
per second (`read`). Prints the statuses the clients saw (`queued` for one whose head had not
come within 2 s: it waits for a worker), and the server's resident memory at rest, at the end
and at its peak (VmHWM). Linux only (reads /proc).
"""

import io
import re
import socket
import subprocess
import sys
import threading
import time

import numpy as np
from PIL import Image

PORT = 8932


def flat_png(width, height):
    y, x = np.mgrid[0:height, 0:width]
    pixels = ((x // 50 + y // 40) % 7 * 30).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def mib(pid, field):
    status = open(f"/proc/{pid}/status").read()
    return int(re.search(rf"{field}:\s+(\d+)", status).group(1)) // 1024


def main():
    binary, mode = sys.argv[1], sys.argv[2]
    rest = sys.argv[3:]
    rate = int(rest.pop(0)) if mode == "read" else None
    clients, width, height = int(rest[0]), int(rest[1]), int(rest[2])
    serve_args = rest[3:]
    body = flat_png(width, height)
    server = subprocess.Popen(
        [binary, "serve", "--backend", "cpu", "--bind", f"127.0.0.1:{PORT}", "-q"] + serve_args,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1)
    idle = mib(server.pid, "VmRSS")
    statuses = {}
    lock = threading.Lock()
    sockets = []

    def client():
        s = socket.create_connection(("127.0.0.1", PORT))
        sockets.append(s)
        head = (
            f"POST /v1/filter?edge=true&format=pgm HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        s.sendall(head.encode() + body)
        s.settimeout(2)
        try:
            status = s.recv(4096).split(b"\r\n")[0].decode()
        except socket.timeout:
            status = "queued"
        with lock:
            statuses[status] = statuses.get(status, 0) + 1
        if rate is None:
            return
        s.settimeout(None)
        started, taken = time.monotonic(), 0
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return
            taken += len(chunk)
            ahead = taken / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
        time.sleep(0.05)
    peak_seen = 0
    deadline = time.monotonic() + (20 if rate else 3)
    while time.monotonic() < deadline:
        peak_seen = max(peak_seen, mib(server.pid, "VmRSS"))
        time.sleep(0.2)
    print(
        f"clients {clients} {mode}{'' if rate is None else f' at {rate} B/s'} "
        f"{dict(sorted(statuses.items()))} idle MiB {idle} now MiB {mib(server.pid, 'VmRSS')} "
        f"peak MiB {mib(server.pid, 'VmHWM')}"
    )
    server.kill()
    for s in sockets:
        s.close()


if __name__ == "__main__":
    main()
