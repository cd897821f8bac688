"""gpuconv.responses: unclipped sums on both backends, and the lesson's Keras model to the bit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import random_image, reference, sums

import gpuconv

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "img"


def keras_model(image: np.ndarray, kernels: list[np.ndarray]) -> np.ndarray:
    """A numpy emulation of the lesson's model: Conv2D(len(kernels), (3, 3), padding='valid',
    use_bias=False) with the kernels as its weights, on the gray image as float32, batch of one.
    Keras correlates (no flip) and sums in float32; here each output channel is the sum of the
    nine shifted images times their weights."""
    x = image.astype(np.float32)[np.newaxis, :, :, np.newaxis]  # NHWC
    weights = np.stack(kernels, axis=-1).astype(np.float32)[:, :, np.newaxis, :]  # HWIO
    height, width = x.shape[1] - 2, x.shape[2] - 2
    out = np.zeros((1, height, width, weights.shape[-1]), dtype=np.float32)
    for r in range(3):
        for c in range(3):
            out += x[:, r : r + height, c : c + width, :] @ weights[r, c]
    return out


def lesson_images() -> dict[str, np.ndarray]:
    images = {
        "5x5 example": np.array(
            [[1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1], [0, 0, 1, 1, 0], [0, 1, 1, 0, 0]],
            dtype=np.uint8,
        )
    }
    for name in ("stripe-vertical.pgm", "stripe-horizontal.pgm", "arrows.png", "camera.png", "coffee.png"):
        images[name] = gpuconv.filter(IMAGES / name, "identity", border="replicate", backend="cpu")
    return images


@pytest.mark.parametrize("name", list(lesson_images()))
def test_the_lessons_keras_model_to_the_bit(engine: gpuconv.Engine, name: str) -> None:
    image = lesson_images()[name]
    v, h = engine.responses(image)
    assert v.dtype == np.int32 and h.dtype == np.int32
    model = keras_model(image, [gpuconv.kernel("vertical"), gpuconv.kernel("horizontal")])
    # The model's two channels are the two responses, and |V| + |H| its sum of absolutes.
    np.testing.assert_array_equal(v, model[0, :, :, 0])
    np.testing.assert_array_equal(h, model[0, :, :, 1])
    np.testing.assert_array_equal(np.abs(v) + np.abs(h), np.abs(model[0]).sum(axis=-1))
    # Clipped, they are gpuconv.filter's pixels.
    np.testing.assert_array_equal(np.minimum(np.abs(v), 255), engine.filter(image, "vertical"))


def test_the_stripes_show_what_clipping_hides(engine: gpuconv.Engine) -> None:
    stripes = lesson_images()["stripe-vertical.pgm"]
    v = engine.responses(stripes, "vertical")
    np.testing.assert_array_equal(v, [[-1020, -1020, 0, 1020, 1020]] * 5)
    np.testing.assert_array_equal(engine.responses(stripes, "vertical", clip=True), [[255, 255, 0, 255, 255]] * 5)


@pytest.mark.parametrize("border", gpuconv.BORDERS)
@pytest.mark.parametrize("height,width", [(3, 3), (17, 5), (45, 67), (101, 33)])
def test_sums_equal_the_numpy_reference(engine: gpuconv.Engine, border: str, height: int, width: int) -> None:
    image = random_image(height, width, seed=height * 31 + width)
    names = ["vertical", "laplacian-8", "box-blur", "x"]
    outs = engine.responses(image, names, border=border)
    assert [o.dtype for o in outs] == [np.int32, np.int32, np.float32, np.int32]
    for name, out in zip(names, outs):
        expected = sums(image, gpuconv.kernel(name), border)
        if out.dtype == np.int32 or not engine.has_gpu:
            np.testing.assert_array_equal(out, expected, err_msg=name)
        else:
            np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-3, err_msg=name)
    # One kernel gives one array; large weights give sums far past 255.
    big = np.array([[1000, -2000, 0], [0, 30000, 0], [-1, 0, 65536]])
    np.testing.assert_array_equal(engine.responses(image, big, border=border), sums(image, big, border))
    clipped = engine.responses(image, names, clip=True, border=border)
    for name, out in zip(names, clipped):
        np.testing.assert_array_equal(out, reference(image, gpuconv.kernel(name), border), err_msg=name)


def test_bad_arguments_raise() -> None:
    image = random_image(9, 9, seed=1)
    with pytest.raises(gpuconv.ArgumentError, match="clip must be"):
        gpuconv.responses(image, clip="no", backend="cpu")
    with pytest.raises(gpuconv.ArgumentError, match="not a finite number"):
        gpuconv.responses(image, [[np.inf, 0, 0], [0, 0, 0], [0, 0, 0]], backend="cpu")
    with pytest.raises(gpuconv.ArgumentError, match="smaller than the 3×3 kernel"):
        gpuconv.responses(image[:2], backend="cpu")


def test_the_lesson_example_prints_every_matrix() -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "python" / "examples" / "lesson.py"), "--backend", "cpu"],
        capture_output=True,
        text=True,
        check=True,
    )
    out = run.stdout
    assert "its convolution with x (3x3):\n  [4 3 4]\n  [2 4 3]\n  [2 3 4]" in out
    assert "stripe-vertical * vertical lines (5x5):\n  [255 255   0 255 255]" in out
    assert "stripe-vertical: the Keras model's V (unclipped) (5x5):\n  [-1020 -1020     0  1020  1020]" in out
    assert (
        "stripe-horizontal: the Keras model's |V| + |H| (5x5):\n  [1020 1020 1020 1020 1020]\n"
        "  [1020 1020 1020 1020 1020]\n  [   0    0    0    0    0]\n" in out
    )
    assert "camera.png: edges 510x510" in out
