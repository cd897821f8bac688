#!/usr/bin/env python3
"""`gpuconv stream` frames per second per backend, on the same raw gray frames, the median of
--repeat runs of the whole process; checks that every backend wrote the same bytes. Needs numpy
only (the GPU machine has no ffmpeg: bench/frames.sh is the comparison with ffmpeg).

    python3 bench/stream_fps.py --bin target/release/gpuconv --backends cpu,gpu
"""

import argparse
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def frames(count: int, width: int, height: int) -> bytes:
    """Moving shading, blocks and noise: every frame different, none uniform."""
    y, x = np.mgrid[0:height, 0:width].astype(np.int64)
    rng = np.random.default_rng(7)
    out = bytearray()
    for i in range(count):
        shade = 60 + 100 * ((x + 7 * i) % width) // width + 60 * y // height
        block = np.where(((x + 3 * i) // 97 + y // 61) % 3 == 0, 50, 0)
        noise = rng.integers(-8, 8, size=(height, width))
        out += np.clip(shade + block + noise, 0, 255).astype(np.uint8).tobytes()
    return bytes(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", default="target/release/gpuconv")
    parser.add_argument("--size", default="1920x1080")
    parser.add_argument("--frames", default=300, type=int)
    parser.add_argument("--repeat", default=3, type=int)
    parser.add_argument("--backends", default="cpu,gpu")
    parser.add_argument("--op", default="--edge", help="the operation's flags, e.g. '-k vertical'")
    parser.add_argument("--out", default="target/bench", type=Path)
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    args.out.mkdir(parents=True, exist_ok=True)
    source = args.out / f"frames-{args.size}-{args.frames}.gray"
    source.write_bytes(frames(args.frames, width, height))
    results = []
    digests = set()
    for backend in args.backends.split(","):
        command = [args.bin, "stream", "--size", args.size, *args.op.split(), "--backend", backend]
        walls = []
        for _ in range(args.repeat):
            with open(source, "rb") as stdin:
                start = time.perf_counter()
                done = subprocess.run(command, stdin=stdin, capture_output=True)
                walls.append(time.perf_counter() - start)
            if done.returncode != 0:
                sys.exit(f"{command}: {done.stderr.decode(errors='replace')}")
            digests.add(hashlib.sha256(done.stdout).hexdigest())
        walls.sort()
        wall = walls[len(walls) // 2]
        result = {
            "backend": backend,
            "size": args.size,
            "frames": args.frames,
            "op": args.op,
            "seconds": wall,
            "fps": args.frames / wall,
            "seconds_all": walls,
        }
        results.append(result)
        print(json.dumps(result), flush=True)
    source.unlink()
    same = len(digests) == 1
    (args.out / "stream-fps.json").write_text(json.dumps({"results": results, "backends_agree": same}, indent=2) + "\n")
    print(f"backends agree byte for byte: {same}")
    if not same:
        sys.exit("outputs differ")


if __name__ == "__main__":
    main()
