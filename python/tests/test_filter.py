"""gpuconv.filter against a numpy reference, on both backends, as Python users call it."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from conftest import random_image, reference, reference_edge

import gpuconv

LESSON_EXAMPLE = np.array(
    [[1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1], [0, 0, 1, 1, 0], [0, 1, 1, 0, 0]],
    dtype=np.uint8,
)
X = [[1, 0, 1], [0, 1, 0], [1, 0, 1]]
ODD_SIZES = [(3, 3), (5, 7), (17, 3), (31, 45), (67, 129), (201, 97)]


def test_the_lessons_example(engine: gpuconv.Engine) -> None:
    out = engine.filter(LESSON_EXAMPLE, X)
    np.testing.assert_array_equal(out, [[4, 3, 4], [2, 4, 3], [2, 3, 4]])
    assert out.dtype == np.uint8


def test_the_lessons_stripes(engine: gpuconv.Engine) -> None:
    # The lesson's 7x7 images: bright left half, then bright top half.
    vertical = np.array([[10, 10, 10, 0, 0, 0, 0]] * 7, dtype=np.uint8)
    v, h = engine.filter(vertical)
    np.testing.assert_array_equal(v, [[0, 40, 40, 0, 0]] * 5)
    np.testing.assert_array_equal(h, np.zeros((5, 5)))
    v, h = engine.filter(vertical.T.copy())
    np.testing.assert_array_equal(h, np.array([[0, 40, 40, 0, 0]] * 5).T)
    np.testing.assert_array_equal(v, np.zeros((5, 5)))


@pytest.mark.parametrize("height,width", ODD_SIZES)
@pytest.mark.parametrize("name", gpuconv.KERNELS)
def test_every_named_kernel_on_random_images(engine: gpuconv.Engine, name: str, height: int, width: int) -> None:
    image = random_image(height, width, seed=height * 1000 + width)
    weights = gpuconv.kernel(name)
    expected = reference(image, weights)
    actual = engine.filter(image, name)
    whole = bool(np.all(weights == np.round(weights)))
    if whole or not engine.has_gpu:
        np.testing.assert_array_equal(actual, expected, err_msg=f"{name} {height}x{width}")
    else:
        # A GPU may fuse a multiply and an add in a fractional kernel's sums: at most 1 off.
        assert np.abs(actual.astype(int) - expected).max() <= 1


@pytest.mark.parametrize("border", gpuconv.BORDERS)
@pytest.mark.parametrize("height,width", [(3, 3), (1, 1), (2, 9), (37, 23), (64, 65)])
def test_every_border(engine: gpuconv.Engine, border: str, height: int, width: int) -> None:
    image = random_image(height, width, seed=height + 7 * width)
    if border == "valid" and (height < 3 or width < 3):
        with pytest.raises(gpuconv.ArgumentError, match="smaller than the 3×3 kernel"):
            engine.filter(image, "vertical", border=border)
        return
    for name in ("vertical", "horizontal", "laplacian-8"):
        actual = engine.filter(image, name, border=border)
        np.testing.assert_array_equal(actual, reference(image, gpuconv.kernel(name), border), err_msg=name)
    edge = engine.filter(image, edge=True, border=border)
    np.testing.assert_array_equal(edge, reference_edge(image, border))


def test_edge_and_threshold(engine: gpuconv.Engine) -> None:
    image = random_image(45, 61, seed=3)
    edge = engine.filter(image, edge=True)
    np.testing.assert_array_equal(edge, reference_edge(image))
    v = reference(image, gpuconv.kernel("vertical")).astype(int)
    h = reference(image, gpuconv.kernel("horizontal")).astype(int)
    for threshold in (0, 1, 255, 300, 510):
        binary = engine.filter(image, threshold=threshold)
        np.testing.assert_array_equal(binary, np.where(v + h >= threshold, 255, 0))
    # Two kernels of the caller's own combine the same way, given as names or as one array.
    stacked = np.stack([gpuconv.kernel("vertical"), gpuconv.kernel("horizontal")])
    np.testing.assert_array_equal(engine.filter(image, stacked, edge=True), edge)
    # Prewitt's pair:
    mine = engine.filter(image, ["prewitt-vertical", "prewitt-horizontal"], edge=True)
    pv = reference(image, gpuconv.kernel("prewitt-vertical")).astype(int)
    ph = reference(image, gpuconv.kernel("prewitt-horizontal")).astype(int)
    np.testing.assert_array_equal(mine, np.minimum(pv + ph, 255))


def test_kernels_as_names_text_lists_and_arrays(engine: gpuconv.Engine) -> None:
    image = random_image(33, 19, seed=11)
    expected = reference(image, np.array(X))
    for kernel in (X, np.array(X), np.array(X, dtype=np.int8), "1,0,1;0,1,0;1,0,1", "x", tuple(map(tuple, X))):
        np.testing.assert_array_equal(engine.filter(image, kernel), expected, err_msg=repr(kernel))
    # A sequence of kernels gives a list, one array per kernel, in order.
    outs = engine.filter(image, ["vertical", X, np.array(gpuconv.kernel("horizontal"))])
    assert isinstance(outs, list) and len(outs) == 3
    np.testing.assert_array_equal(outs[1], expected)
    np.testing.assert_array_equal(outs[2], reference(image, gpuconv.kernel("horizontal")))
    stacked = engine.filter(image, np.stack([np.array(X), gpuconv.kernel("vertical")]))
    np.testing.assert_array_equal(stacked[0], expected)
    # Fractional weights are summed in float32 and rounded, as the library does.
    third = np.full((3, 3), 1 / 3)
    actual = engine.filter(image, third)
    diff = np.abs(actual.astype(int) - reference(image, third))
    assert diff.max() <= (1 if engine.has_gpu else 0)


def test_strided_and_non_contiguous_arrays(engine: gpuconv.Engine) -> None:
    big = random_image(101, 87, seed=5)
    views = {
        "every other column": big[:, ::2],
        "every third row": big[::3, :],
        "transposed": big.T,
        "fortran order": np.asfortranarray(big),
        "reversed": big[::-1, ::-1],
        "a window": big[10:60, 7:50],
        "a column of a 3-D array": np.stack([big, big // 2], axis=-1)[:, :, 1],
    }
    for what, image in views.items():
        before = image.copy()
        actual = engine.filter(image, edge=True)
        np.testing.assert_array_equal(actual, reference_edge(np.ascontiguousarray(image)), err_msg=what)
        np.testing.assert_array_equal(image, before, err_msg=f"{what}: the input changed")


def test_rgb_rgba_pillow_and_path_inputs(engine: gpuconv.Engine, tmp_path) -> None:
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(9)
    rgb = rng.integers(0, 256, size=(41, 53, 3), dtype=np.uint8)
    gray = np.asarray(Image.fromarray(rgb).convert("L"))
    expected = reference_edge(gray)
    np.testing.assert_array_equal(engine.filter(rgb, edge=True), expected)
    rgba = np.concatenate([rgb, rng.integers(0, 256, size=(41, 53, 1), dtype=np.uint8)], axis=-1)
    np.testing.assert_array_equal(engine.filter(rgba, edge=True), expected)
    np.testing.assert_array_equal(engine.filter(Image.fromarray(rgb), edge=True), expected)
    np.testing.assert_array_equal(engine.filter(Image.fromarray(rgba), edge=True), expected)
    np.testing.assert_array_equal(engine.filter(Image.fromarray(gray), edge=True), expected)
    path = tmp_path / "photo.png"
    Image.fromarray(rgb).save(path)
    np.testing.assert_array_equal(engine.filter(path, edge=True), expected)
    np.testing.assert_array_equal(engine.filter(str(path), edge=True), expected)
    # A 16-bit image is scaled as 16-bit files are read: round(v / 257).
    wide = (gray.astype(np.uint16) * 257 + rng.integers(0, 100, size=gray.shape)).astype(np.uint16)
    scaled = ((wide.astype(np.uint32) + 128) // 257).astype(np.uint8)
    sixteen = Image.fromarray(wide)
    assert sixteen.mode == "I;16"
    np.testing.assert_array_equal(engine.filter(sixteen, edge=True), reference_edge(scaled))
    # The lesson's own nested lists.
    np.testing.assert_array_equal(engine.filter(LESSON_EXAMPLE.tolist(), X), [[4, 3, 4], [2, 4, 3], [2, 3, 4]])


def test_out_arrays_are_written_and_returned(engine: gpuconv.Engine) -> None:
    image = random_image(29, 31, seed=21)
    out = np.full((27, 29), 7, dtype=np.uint8)
    returned = engine.filter(image, edge=True, out=out)
    assert returned is out
    np.testing.assert_array_equal(out, reference_edge(image))
    outs = [np.empty((27, 29), dtype=np.uint8) for _ in range(2)]
    v, h = engine.filter(image, out=outs)
    assert v is outs[0] and h is outs[1]
    np.testing.assert_array_equal(h, reference(image, gpuconv.kernel("horizontal")))
    with pytest.raises(gpuconv.ArgumentError, match="shape"):
        engine.filter(image, edge=True, out=np.empty((29, 31), dtype=np.uint8))
    with pytest.raises(gpuconv.ArgumentError, match="C-contiguous"):
        engine.filter(image, edge=True, out=np.empty((29, 54), dtype=np.uint8)[:27, ::2])
    with pytest.raises(gpuconv.ArgumentError, match="writes 2"):
        engine.filter(image, out=[out])
    with pytest.raises(gpuconv.ArgumentError, match="uint8"):
        engine.filter(image, edge=True, out=np.empty((27, 29), dtype=np.int16))
    frozen = np.empty((27, 29), dtype=np.uint8)
    frozen.flags.writeable = False
    with pytest.raises(gpuconv.ArgumentError):
        engine.filter(image, edge=True, out=frozen)


@pytest.mark.parametrize(
    "image,kwargs,error,message",
    [
        (np.zeros((9, 9), dtype=np.float64), {}, gpuconv.ArgumentError, "dtype is float64"),
        (np.zeros((9, 9), dtype=np.uint16), {}, gpuconv.ArgumentError, "dtype is uint16"),
        (np.arange(9, dtype=np.uint8), {}, gpuconv.ArgumentError, "1 dimensions"),
        (np.zeros((2, 9), dtype=np.uint8), {}, gpuconv.ArgumentError, "smaller than the 3×3 kernel"),
        (np.zeros((0, 0), dtype=np.uint8), {"border": "zero"}, gpuconv.ArgumentError, "0×0"),
        (np.zeros((9, 9, 2), dtype=np.uint8), {}, gpuconv.ArgumentError, "this one has 2"),
        (
            np.zeros((9, 9), dtype=np.uint8),
            {"kernels": [[1, 0, float("nan")], [0, 1, 0], [1, 0, 1]]},
            ValueError,
            "not a finite number",
        ),
        (np.zeros((9, 9), dtype=np.uint8), {"kernels": [[1, 0], [0, 1]]}, ValueError, "shape \\(2, 2\\)"),
        (np.zeros((9, 9), dtype=np.uint8), {"kernels": "sobel-z"}, ValueError, "sobel-z"),
        (np.zeros((9, 9), dtype=np.uint8), {"kernels": ["vertical"] * 9}, ValueError, "9 kernels"),
        (np.zeros((9, 9), dtype=np.uint8), {"kernels": "vertical", "edge": True}, ValueError, "exactly 2 kernels"),
        (np.zeros((9, 9), dtype=np.uint8), {"edge": True, "threshold": 255}, ValueError, "exclude each other"),
        (np.zeros((9, 9), dtype=np.uint8), {"threshold": 511}, ValueError, "never be reached"),
        (np.zeros((9, 9), dtype=np.uint8), {"border": "wrap"}, ValueError, "border 'wrap' is not one of"),
        (np.zeros((9, 9), dtype=np.uint8), {"threads": 0}, ValueError, "threads must be"),
        (np.zeros((9, 9), dtype=np.uint8), {"backend": "tpu"}, ValueError, "backend 'tpu'"),
        ([[1, 2, 3], [4, 5, 300], [7, 8, 9]], {}, ValueError, "0 to 255"),
        (b"\x89PNG", {}, ValueError, "bytes are not an image"),
    ],
)
def test_bad_inputs_raise_one_clear_exception(image, kwargs, error, message) -> None:
    with pytest.raises(error, match=message) as raised:
        gpuconv.filter(image, **{"backend": "cpu", **kwargs})
    assert isinstance(raised.value, gpuconv.Error)
    assert "\n" not in str(raised.value)


def test_unreadable_files_raise_input_errors(tmp_path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    with pytest.raises(gpuconv.InputError, match="broken.png"):
        gpuconv.filter(broken, backend="cpu")
    with pytest.raises(gpuconv.InputError, match="missing.png"):
        gpuconv.filter(tmp_path / "missing.png", backend="cpu")


def test_threads_per_call_give_the_same_bits() -> None:
    image = random_image(301, 257, seed=1)
    expected = reference_edge(image)
    for threads in (1, 2, 3, None):
        np.testing.assert_array_equal(gpuconv.filter(image, edge=True, backend="cpu", threads=threads), expected)


def test_threads_share_one_engine(engine: gpuconv.Engine) -> None:
    images = [random_image(64 + i, 96 - i, seed=100 + i) for i in range(8)]
    expected = [reference_edge(image) for image in images]
    results: dict = {}
    failures: list = []

    def work(i: int) -> None:
        try:
            for _ in range(3):
                results[i] = engine.filter(images[i], edge=True)
                np.testing.assert_array_equal(results[i], expected[i])
        except Exception as error:  # noqa: BLE001 - reported below, with its thread
            failures.append((i, error))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures
    assert sorted(results) == list(range(8))


def test_auto_says_where_it_filters() -> None:
    engine = gpuconv.Engine("auto")
    assert engine.description.startswith(("cpu", "gpu"))
    # Without a hardware GPU (as in CI, on lavapipe), auto runs on the CPU and says why.
    if not engine.has_gpu:
        assert engine.fallback_reason
    np.testing.assert_array_equal(engine.filter(LESSON_EXAMPLE, X), [[4, 3, 4], [2, 4, 3], [2, 3, 4]])


def test_arrays_sharing_memory_and_odd_arguments_are_refused(engine: gpuconv.Engine) -> None:
    # An out array over the image's own bytes (another view of one buffer) would read
    # half-written pixels: refused, as are two outs over the same bytes.
    buffer = bytearray(random_image(64, 68, seed=11).tobytes())
    image = np.frombuffer(buffer, np.uint8, count=64 * 64).reshape(64, 64)
    overlapping = np.frombuffer(buffer, np.uint8, count=62 * 62, offset=64).reshape(62, 62)
    with pytest.raises(gpuconv.ArgumentError, match="shares memory with the image"):
        engine.filter(image, "vertical", out=overlapping)
    twice = np.empty((62, 62), np.uint8)
    with pytest.raises(gpuconv.ArgumentError, match="two out arrays share memory"):
        engine.filter(image.copy(), out=[twice, twice[:, :]])
    with pytest.raises(gpuconv.ArgumentError, match="2-D uint8"):
        engine.filter(image.copy(), edge=True, out=np.empty((62, 62, 1), np.uint8))
    with pytest.raises(gpuconv.ArgumentError, match="a numpy array or a sequence"):
        engine.filter(image.copy(), edge=True, out=5)
    # Kernels from a generator are read once; numpy's booleans are booleans.
    expected = engine.filter(image.copy(), ["vertical", "horizontal"])
    from_generator = engine.filter(image.copy(), (k for k in ["vertical", "horizontal"]))
    np.testing.assert_array_equal(from_generator[1], expected[1])
    np.testing.assert_array_equal(engine.filter(image, edge=np.True_), engine.filter(image, edge=True))
    with pytest.raises(gpuconv.ArgumentError, match="threads must be"):
        engine.filter(image, threads=2**70)
    with pytest.raises(gpuconv.ArgumentError, match="per core"):
        engine.filter(image, threads=100_000)
    with pytest.raises(gpuconv.ArgumentError, match="beyond any kernel's range"):
        engine.filter(image, [[1e300, 0, 0], [0, 0, 0], [0, 0, 0]])
    with pytest.raises(gpuconv.ArgumentError, match="image is empty"):
        engine.filter([])


def test_many_thread_counts_keep_a_few_pools() -> None:
    import threading as _threading

    image = random_image(40, 41, seed=2)
    expected = reference_edge(image)
    before = _threading.active_count()
    import os

    # Up to 4 per core are allowed: 2 to 8 on two cores, at most 10 counts anywhere.
    for threads in list(range(2, 4 * (os.cpu_count() or 1) + 1))[:10]:
        np.testing.assert_array_equal(gpuconv.filter(image, edge=True, backend="cpu", threads=threads), expected)
    # rayon's threads are not Python threads; the process's own count is what matters.
    tasks = len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else 0
    assert _threading.active_count() == before
    # At most 4 pools kept, each of at most 10 threads beside its callers (those counts ask for
    # at most 11), and rayon's global pool (one thread a core), beside Python's own threads.
    assert tasks < 4 * 10 + (os.cpu_count() or 1) + 30, tasks
