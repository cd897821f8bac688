"""Two gpuconv builds on the same inputs, taking turns: whether a change made anything a user
sees slower or bigger. The CPU backend throughout (a GPU's rows come from scripts/gpu-bench.sh).

    python bench/regression.py BASELINE_BIN NEW_BIN [--repeat 5] [--out results.json]

Workloads, each a fresh process per run unless said:
- in-process: `gpuconv bench --backend cpu` at 4096x4096, `vertical` and `edge` (its own medians);
- streaming: a 16384x16384 PNG to its edge PNG (wall time and peak RSS);
- frames: 300 raw 1920x1080 frames through `gpuconv stream -k vertical`;
- batch: a folder of 1-megapixel PNGs to edge PNGs in one `gpuconv filter`;
- service: `hey` posting a 1000x1000 PNG to `gpuconv serve` at 8 clients (requests/s);
- service memory: one 16384x16384 PNG posted to `gpuconv serve` with the limits raised (the
  server's peak RSS).

Runs alternate between the builds so that the machine's drift hits both alike; the spread of
each build's runs is the noise a difference must beat. Outputs of the two builds are compared
pixel for pixel (decoded) where they are files.
"""

import argparse
import json
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

Image.MAX_IMAGE_PIXELS = None
WORK = Path("target/bench/regression")


def synthetic(width, height, seed):
    """Shading, hard-edged blocks and noise: a PNG neither trivial nor incompressible."""
    rng = np.random.default_rng(seed)
    image = np.empty((height, width), np.uint8)
    x = np.arange(width)
    for top in range(0, height, 1024):
        y = np.arange(top, min(top + 1024, height))[:, None]
        block = 60 + (x + 3 * seed) % 200 // 2 + 50 * (((x // 97) + y // 61) % 3 == 0)
        block = block + rng.integers(0, 8, block.shape)
        image[top : top + len(y)] = np.clip(block, 0, 255)
    return image


def run(command, stdin=None, stdout=subprocess.DEVNULL):
    """Runs a command; its wall time and peak RSS in MiB. The peak comes from GNU time, whose
    own child it is: a child of this (large) Python process would inherit its high-water mark
    through fork and exec."""
    report = WORK / "time.txt"
    start = time.perf_counter()
    process = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(report), *command],
                             stdin=stdin, stdout=stdout, stderr=subprocess.PIPE)
    wall = time.perf_counter() - start
    if process.returncode != 0:
        sys.exit(f"{command} failed: {process.stderr.decode()}")
    return wall, int(report.read_text().split()[-1]) / 1024


def same_pixels(a, b):
    return np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(binary, *flags):
    port = free_port()
    server = subprocess.Popen(
        [binary, "serve", "--backend", "cpu", "--bind", f"127.0.0.1:{port}", "-q", *flags],
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                return server, port
        except OSError:
            time.sleep(0.05)
    server.kill()
    sys.exit("the server did not start")


def peak_rss_mib(pid):
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024


def in_process(binary):
    out = subprocess.run(
        [binary, "bench", "--backend", "cpu", "--sizes", "4096x4096", "--ops", "vertical,edge",
         "--repeat", "5", "--no-resident"],
        capture_output=True, text=True, check=True,
    ).stdout
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("baseline")
    parser.add_argument("new")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--batch-files", type=int, default=300)
    parser.add_argument("--out", default="target/bench/regression.json")
    args = parser.parse_args()
    builds = {"baseline": str(Path(args.baseline).resolve()), "new": str(Path(args.new).resolve())}
    WORK.mkdir(parents=True, exist_ok=True)

    large = WORK / "large.png"
    if not large.exists():
        Image.fromarray(synthetic(16384, 16384, 1)).save(large, compress_level=1)
    frames = WORK / "frames.raw"
    if not frames.exists():
        with open(frames, "wb") as f:
            for i in range(300):
                f.write(synthetic(1920, 1080, i).tobytes())
    folder = WORK / "folder"
    if not folder.exists() or len(list(folder.glob("*.png"))) != args.batch_files:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        for i in range(args.batch_files):
            Image.fromarray(synthetic(1000, 1000, i)).save(folder / f"img{i:04d}.png", compress_level=1)
    small = WORK / "small.png"
    if not small.exists():
        Image.fromarray(synthetic(1000, 1000, 7)).save(small, compress_level=1)

    results = {name: {} for name in builds}

    def record(build, workload, value):
        results[build].setdefault(workload, []).append(value)

    for round in range(args.repeat):
        for build, binary in builds.items():
            out = WORK / f"{build}-edge.png"
            wall, rss = run([binary, "filter", str(large), "--edge", "-o", str(out), "--backend", "cpu"])
            record(build, "streaming 16384x16384 PNG: wall s", wall)
            record(build, "streaming 16384x16384 PNG: peak RSS MiB", rss)

            with open(frames, "rb") as source:
                raw_out = WORK / f"{build}-frames.raw"
                with open(raw_out, "wb") as sink:
                    wall, _ = run([binary, "stream", "--size", "1920x1080", "-k", "vertical", "--backend", "cpu"],
                                  stdin=source, stdout=sink)
            record(build, "frames 300x1920x1080: frames/s", 300 / wall)

            outdir = WORK / f"{build}-batch"
            shutil.rmtree(outdir, ignore_errors=True)
            wall, rss = run([binary, "filter", *sorted(map(str, folder.glob("*.png"))), "--edge",
                             "-o", f"{outdir}/", "--backend", "cpu", "-q"])
            record(build, f"batch {args.batch_files}x1Mpx PNG: files/s", args.batch_files / wall)
            record(build, f"batch {args.batch_files}x1Mpx PNG: peak RSS MiB", rss)

            server, port = serve(binary)
            try:
                url = f"http://127.0.0.1:{port}/v1/filter?edge=true"
                subprocess.run(["hey", "-n", "40", "-c", "8", "-m", "POST", "-D", str(small), url],
                               capture_output=True, check=True)
                text = subprocess.run(["hey", "-n", "400", "-c", "8", "-m", "POST", "-D", str(small), url],
                                      capture_output=True, text=True, check=True).stdout
                record(build, "service 1000x1000 PNG, 8 clients: requests/s",
                       float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)))
                if "[200]\t400 responses" not in text:
                    sys.exit(f"{build}: not every request was a 200:\n{text}")
            finally:
                server.terminate()
                server.wait()

            server, port = serve(binary, "--max-body-bytes", "2G", "--max-pixels", "300000000",
                                 "--max-memory", "8G", "--workers", "1", "--request-timeout", "600")
            try:
                answer = WORK / f"{build}-served.png"
                subprocess.run(["curl", "-sf", "--data-binary", f"@{large}", "-o", str(answer),
                                f"http://127.0.0.1:{port}/v1/filter?edge=true"], check=True)
                record(build, "service, one 16384x16384 PNG: server peak RSS MiB", peak_rss_mib(server.pid))
            finally:
                server.terminate()
                server.wait()
        print(f"round {round + 1} of {args.repeat} done", file=sys.stderr)

    checks = {
        "streamed outputs equal": same_pixels(WORK / "baseline-edge.png", WORK / "new-edge.png"),
        "served outputs equal": same_pixels(WORK / "baseline-served.png", WORK / "new-served.png"),
        "frames equal": (WORK / "baseline-frames.raw").read_bytes() == (WORK / "new-frames.raw").read_bytes(),
        "batch outputs equal": all(
            same_pixels(p, WORK / "new-batch" / p.name) for p in sorted((WORK / "baseline-batch").glob("*.png"))[:20]
        ),
    }
    inproc = {build: in_process(binary) for build, binary in builds.items()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"results": results, "checks": checks, "in_process": inproc}, indent=1))

    print("| workload | baseline median (range) | new median (range) | new / baseline |")
    print("| --- | ---: | ---: | ---: |")
    for workload in results["baseline"]:
        a, b = results["baseline"][workload], results["new"][workload]
        fmt = lambda v: f"{statistics.median(v):.3g} ({min(v):.3g}-{max(v):.3g})"
        print(f"| {workload} | {fmt(a)} | {fmt(b)} | {statistics.median(b) / statistics.median(a):.2f} |")
    print()
    for name, ok in checks.items():
        print(f"{name}: {ok}")
    for build, text in inproc.items():
        print(f"\n`gpuconv bench` in process, {build}:\n{text}")


if __name__ == "__main__":
    main()
