"""gpuconv from Python (issue #20 part 4), in one run on the same images: `gpuconv.filter` on a numpy
array against the Rust library's `run` on the same pixels (`gpuconv bench --input`, which times
`Engine::run` in-process: no decoding, a fresh output each run, as `filter` allocates its arrays),
and against OpenCV (`cv2.filter2D` for one kernel, and its edge chain: two `filter2D`s or two
`cv2.Sobel`s, `convertScaleAbs`, `cv2.add`), at one thread and at every core. Every output is
checked against shared/bench's numpy reference first.

    python bench/python_api.py [--sizes 1024,4096,8192] [--repeat 9] [--json out.json]

Needs the package installed (`pip install ./python`), opencv-python-headless, and
target/release/gpuconv (built if missing). Each tool's figure is the median over `--rounds`
rounds (11) of its median of `--repeat` runs (3) after one warm-up, and its best round beside it;
within a round the tools take turns, so that a slow spell of the machine falls on each alike
(on the shared 2-core VM a run's time wanders by a third from one minute to the next).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(
    0,
    str(Path(os.environ.get("PEERS_DIR", ROOT.parent / "shared" / "bench")).resolve()),
)
import gpuconv
from filters import KERNELS, OpenCVFilter2DPeer, OpenCVSobelPeer, reference
from peers import synthetic_image


def rust_run_ms(binary: str, pgm: Path, threads: int, repeat: int) -> dict[str, float]:
    """The Rust library's `run` on `pgm` (median ms per op), from `gpuconv bench --input`."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run(
            [
                binary,
                "bench",
                "--input",
                str(pgm),
                "--backend",
                "cpu",
                "--ops",
                "vertical,edge",
                "--repeat",
                str(repeat),
                "--json",
                out.name,
            ],
            env={**os.environ, "RAYON_NUM_THREADS": str(threads)},
            check=True,
            stdout=subprocess.DEVNULL,
        )
        with open(out.name) as f:
            rows = json.load(f)
    found = {row["op"]: row for row in rows if row["path"] == "host"}
    assert all(found[op]["check"] == "ok" for op in found), found
    return {op: found[op]["total_ms"] for op in ("vertical", "edge")}


def median_ms(call, repeat: int) -> float:
    call()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1024,4096,8192")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--binary", default=str(ROOT / "target" / "release" / "gpuconv")
    )
    args = parser.parse_args()
    if not Path(args.binary).exists():
        subprocess.run(["cargo", "build", "--release"], cwd=ROOT, check=True)
    cores = os.cpu_count() or 1
    results = []
    print(
        f"gpuconv {gpuconv.Engine('cpu').description}; OpenCV peers from shared/bench; {cores} cores"
    )
    print(
        "| size | threads | op | Rust run ms (best) | Python filter ms (best) "
        "| Python / Rust (best) | OpenCV filter2D ms | OpenCV Sobel ms "
        "| filter2D / Python | Sobel / Python |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as work:
        for side in (int(s) for s in args.sizes.split(",")):
            image = synthetic_image(side, side)
            pgm = Path(work) / f"{side}.pgm"
            pgm.write_bytes(f"P5\n{side} {side}\n255\n".encode() + image.tobytes())
            expected = {
                "vertical": reference(image, "v"),
                "edge": reference(image, "edge"),
            }
            for threads in sorted({1, cores}):
                peers = []
                for peer in (OpenCVFilter2DPeer(), OpenCVSobelPeer()):
                    peer.setup(threads)
                    peers.append(peer)

                def python_call(op):
                    if op == "edge":
                        return gpuconv.filter(
                            image, edge=True, backend="cpu", threads=threads
                        )
                    return gpuconv.filter(
                        image, "vertical", backend="cpu", threads=threads
                    )

                def peer_call(peer, op):
                    return (
                        peer.edge(image)
                        if op == "edge"
                        else peer.filter(image, KERNELS["v"])
                    )

                for op in ("vertical", "edge"):
                    assert np.array_equal(python_call(op), expected[op]), op
                    for peer in peers:
                        assert np.array_equal(peer_call(peer, op), expected[op]), (
                            peer.key,
                            op,
                        )
                rounds = {
                    op: {"rust": [], "python": [], "filter2d": [], "sobel": []}
                    for op in expected
                }
                for _ in range(args.rounds):
                    rust = rust_run_ms(args.binary, pgm, threads, args.repeat)
                    for op in ("vertical", "edge"):
                        took = rounds[op]
                        took["rust"].append(rust[op])
                        took["python"].append(
                            median_ms(lambda: python_call(op), args.repeat)
                        )
                        took["filter2d"].append(
                            median_ms(lambda: peer_call(peers[0], op), args.repeat)
                        )
                        took["sobel"].append(
                            median_ms(lambda: peer_call(peers[1], op), args.repeat)
                        )
                for op in ("vertical", "edge"):
                    m = {
                        tool: statistics.median(times)
                        for tool, times in rounds[op].items()
                    }
                    best = {tool: min(times) for tool, times in rounds[op].items()}
                    row = {
                        "size": f"{side}x{side}",
                        "threads": threads,
                        "op": op,
                        "rust_run_ms": m["rust"],
                        "python_filter_ms": m["python"],
                        "opencv_filter2d_ms": m["filter2d"],
                        "opencv_sobel_ms": m["sobel"],
                        "rounds": rounds[op],
                    }
                    results.append(row)
                    print(
                        f"| {side}x{side} | {threads} | {op} "
                        f"| {m['rust']:.2f} ({best['rust']:.2f}) "
                        f"| {m['python']:.2f} ({best['python']:.2f}) "
                        f"| {m['python'] / m['rust']:.3f} "
                        f"({best['python'] / best['rust']:.3f}) "
                        f"| {m['filter2d']:.2f} | {m['sobel']:.2f} "
                        f"| {m['filter2d'] / m['python']:.2f} "
                        f"| {m['sobel'] / m['python']:.2f} |",
                        flush=True,
                    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
