"""The lesson, in Python, with gpuconv: every matrix it shows, then its Keras model.

    python python/examples/lesson.py            # from the repository (its img/ folder)
    python python/examples/lesson.py --backend gpu

The lesson slides a 3x3 filter over a gray image, multiplies each patch element-wise with the
filter and sums; a picture's pixel is clamp(|sum|, 0, 255). Its last example is a Keras Conv2D
layer whose two 3x3 filters are set to the vertical and horizontal Sobel kernels, adding the
absolute responses without clipping: gpuconv.responses gives those unclipped sums.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import gpuconv

IMAGES = Path(__file__).resolve().parents[2] / "img"


def show(title: str, matrix: np.ndarray) -> None:
    print(f"{title} ({matrix.shape[0]}x{matrix.shape[1]}):")
    width = max(len(str(v)) for v in matrix.ravel())
    for row in matrix:
        print("  [" + " ".join(str(v).rjust(width) for v in row) + "]")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="auto", choices=["auto", "gpu", "cpu"])
    backend = parser.parse_args().backend
    engine = gpuconv.Engine(backend)
    print(f"backend: {engine.description}\n")

    # The 5x5 example and the X-shaped filter.
    example = np.array(
        [[1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1], [0, 0, 1, 1, 0], [0, 1, 1, 0, 0]],
        dtype=np.uint8,
    )
    x = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]])
    show("the 5x5 example", example)
    show("kernel x", x)
    show("its convolution with x", engine.filter(example, x))

    # The two line filters on the 7x7 stripes: bright lines across and down.
    vertical, horizontal = gpuconv.kernel("vertical").astype(int), gpuconv.kernel("horizontal").astype(int)
    show("vertical lines (Sobel)", vertical)
    show("horizontal lines", horizontal)
    for name in ("stripe-vertical", "stripe-horizontal"):
        stripes = gpuconv.filter(IMAGES / f"{name}.pgm", "identity", border="replicate", backend=backend)
        show(name, stripes)
        v, h = engine.filter(stripes)
        show(f"{name} * vertical lines", v)
        show(f"{name} * horizontal lines", h)
        show(f"{name}: edges, min(V + H, 255)", engine.filter(stripes, edge=True))
        show(f"{name}: binary edges, V + H >= 255", engine.filter(stripes, threshold=255))

        # The Keras model: Conv2D(2, (3, 3), use_bias=False) with the two kernels as weights,
        # 'valid', on the image as floats; then |V| + |H|, not clipped.
        v_sums, h_sums = engine.responses(stripes)
        show(f"{name}: the Keras model's V (unclipped)", v_sums)
        show(f"{name}: the Keras model's |V| + |H|", np.abs(v_sums) + np.abs(h_sums))

    # The pictures: the arrows and the photo, their edge images' sizes and strongest responses.
    for name in ("arrows.png", "camera.png"):
        v, h = engine.responses(IMAGES / name)
        edges = engine.filter(IMAGES / name, edge=True)
        keras = np.abs(v) + np.abs(h)
        print(
            f"{name}: edges {edges.shape[1]}x{edges.shape[0]}, {int((edges == 255).sum())} pixels at 255; "
            f"the Keras model's |V| + |H| reaches {int(keras.max())} ({int((keras > 255).sum())} pixels above 255)"
        )


if __name__ == "__main__":
    main()
