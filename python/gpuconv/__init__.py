"""3x3 image convolution (Sobel-style line and edge filters) on the GPU with wgpu, or on every CPU
core, bit-identical either way: numpy arrays in, numpy arrays out.

Each 3x3 window of the gray image is multiplied element-wise with a kernel and summed; the pixel
is ``clamp(|sum|, 0, 255)``. 'valid' by default (the output is two pixels smaller each way),
stride 1, no kernel flip (cross-correlation, as Keras ``Conv2D`` and OpenCV ``filter2D``).

The lesson's 5x5 example and its X-shaped kernel:

>>> import numpy as np, gpuconv
>>> example = np.array([[1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1],
...                     [0, 0, 1, 1, 0], [0, 1, 1, 0, 0]], dtype=np.uint8)
>>> gpuconv.filter(example, [[1, 0, 1], [0, 1, 0], [1, 0, 1]], backend="cpu")
array([[4, 3, 4],
       [2, 4, 3],
       [2, 3, 4]], dtype=uint8)

The lesson's edge image, ``min(V + H, 255)`` of the vertical and horizontal Sobel kernels:

>>> edges = gpuconv.filter(example * 200, edge=True, backend="cpu")
>>> edges.shape
(3, 3)
"""

from __future__ import annotations

import numbers
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from . import _gpuconv
from ._errors import ArgumentError, EngineError, Error, InputError, LimitError

if TYPE_CHECKING:
    import numpy.typing as npt
    from PIL.Image import Image as PILImage

__all__ = [
    "BORDERS",
    "KERNELS",
    "ArgumentError",
    "Engine",
    "EngineError",
    "Error",
    "InputError",
    "LimitError",
    "filter",
    "kernel",
    "responses",
]

#: The kernels gpuconv knows by name, as the library and the command line name them.
KERNELS = tuple(_gpuconv.KERNELS)

#: What the 3x3 windows see beyond the image's edges: ``valid`` (nothing: the output is two
#: pixels smaller each way, the lesson's), ``zero``, ``replicate``, ``reflect`` (OpenCV's
#: BORDER_REFLECT_101) (the output is the image's size).
BORDERS = tuple(_gpuconv.BORDERS)

Kernel = Union[str, Sequence[Sequence[float]], "npt.NDArray[Any]"]
Kernels = Union[Kernel, Sequence[Kernel]]
ImageLike = Union["npt.NDArray[np.uint8]", "PILImage", str, "os.PathLike[str]", Sequence[Sequence[int]]]


class Engine:
    """A filtering engine kept open between calls: on a GPU, its device, pipelines and buffers;
    on the CPU, its pools of threads. Build one and filter many images with it; several Python
    threads may share it (the GIL is released while filtering).

    ``backend``: ``"auto"`` (a hardware GPU when there is one, else every CPU core; small images
    go to the CPU even then), ``"gpu"`` (any GPU, software renderers included; an
    :class:`EngineError` when there is none) or ``"cpu"``.

    >>> import gpuconv
    >>> engine = gpuconv.Engine("cpu")
    >>> engine.description.startswith("cpu")
    True
    """

    def __init__(self, backend: str = "auto") -> None:
        if not isinstance(backend, str):
            raise ArgumentError(f"backend must be a string, not {type(backend).__name__}")
        self._native = _gpuconv.Engine(backend)

    @property
    def description(self) -> str:
        """Where images are filtered, in one line, such as ``cpu (8 threads)``."""
        return self._native.description

    @property
    def fallback_reason(self) -> str | None:
        """Why ``"auto"`` chose the CPU, or ``None``."""
        return self._native.fallback_reason

    @property
    def has_gpu(self) -> bool:
        """Whether this engine holds a GPU open."""
        return self._native.has_gpu

    def filter(
        self,
        image: ImageLike,
        kernels: Kernels = ("vertical", "horizontal"),
        edge: bool = False,
        threshold: int | None = None,
        border: str = "valid",
        threads: int | None = None,
        out: None | npt.NDArray[np.uint8] | Sequence[npt.NDArray[np.uint8]] = None,
    ) -> npt.NDArray[np.uint8] | list[npt.NDArray[np.uint8]]:
        """Filters ``image`` with ``kernels``; see :func:`gpuconv.filter`."""
        gray = _as_gray(image)
        kernels = _listed(kernels)
        single = _is_one_kernel(kernels)
        specs = [_kernel_arg(k) for k in ([kernels] if single else list(kernels))]
        if not isinstance(edge, (bool, np.bool_)):
            raise ArgumentError(f"edge must be True or False, not {edge!r}")
        edge = bool(edge)
        if edge and threshold is not None:
            raise ArgumentError("edge and threshold exclude each other: choose one")
        if threshold is not None:
            if isinstance(threshold, bool) or not isinstance(threshold, numbers.Integral):
                raise ArgumentError(f"threshold must be an integer from 0 to 510, not {threshold!r}")
            if not 0 <= int(threshold) <= 510:
                raise ArgumentError(f"threshold {threshold} can never be reached: V + H is 0 to 510")
        combine = "edge" if edge else "threshold" if threshold is not None else "none"
        _check_border_and_threads(border, threads)
        outs = None
        if out is not None:
            try:
                outs = [out] if isinstance(out, np.ndarray) else list(out)
            except TypeError:
                raise ArgumentError(f"out must be a numpy array or a sequence of them, not {out!r}") from None
            for array in outs:
                if not isinstance(array, np.ndarray) or array.dtype != np.uint8 or array.ndim != 2:
                    raise ArgumentError("out must hold 2-D uint8 numpy arrays")
            # Filtering reads the image while it writes the outputs, with the GIL released:
            # arrays that share memory would read half-written pixels.
            for i, array in enumerate(outs):
                if np.may_share_memory(array, gray):
                    raise ArgumentError("an out array shares memory with the image: use another array")
                if any(np.may_share_memory(array, other) for other in outs[:i]):
                    raise ArgumentError("two out arrays share memory: give each output its own")
        written = self._native.run(
            gray,
            specs,
            combine,
            None if threshold is None else int(threshold),
            border,
            None if threads is None else int(threads),
            outs,
        )
        if combine != "none" or single:
            return written[0]
        return list(written)

    def responses(
        self,
        image: ImageLike,
        kernels: Kernels = ("vertical", "horizontal"),
        clip: bool = False,
        border: str = "valid",
        threads: int | None = None,
    ) -> npt.NDArray[Any] | list[npt.NDArray[Any]]:
        """Each kernel's response; see :func:`gpuconv.responses`."""
        if not isinstance(clip, (bool, np.bool_)):
            raise ArgumentError(f"clip must be True or False, not {clip!r}")
        if clip:
            return self.filter(image, kernels, border=border, threads=threads)
        gray = _as_gray(image)
        kernels = _listed(kernels)
        single = _is_one_kernel(kernels)
        specs = [_kernel_arg(k) for k in ([kernels] if single else list(kernels))]
        _check_border_and_threads(border, threads)
        sums = self._native.sums(gray, specs, border, None if threads is None else int(threads))
        return sums[0] if single else list(sums)


_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def _engine(backend: str) -> Engine:
    """The module's engine for ``backend``, opened by the first call that needs it."""
    with _engines_lock:
        engine = _engines.get(backend)
        if engine is None:
            engine = _engines[backend] = Engine(backend)
        return engine


def filter(
    image: ImageLike,
    kernels: Kernels = ("vertical", "horizontal"),
    edge: bool = False,
    threshold: int | None = None,
    border: str = "valid",
    backend: str = "auto",
    threads: int | None = None,
    out: None | npt.NDArray[np.uint8] | Sequence[npt.NDArray[np.uint8]] = None,
) -> npt.NDArray[np.uint8] | list[npt.NDArray[np.uint8]]:
    """Filters ``image`` with 3x3 ``kernels``: each output pixel is ``clamp(|sum|, 0, 255)`` of
    its window multiplied element-wise with the kernel (cross-correlation, no flip).

    ``image``: a 2-D ``uint8`` array (any strides: C-contiguous ones are read in place), a 3-D
    RGB or RGBA ``uint8`` array (made gray by Pillow's ``convert('L')`` luma), a Pillow image, a
    path to an image file (read as the command line reads it), or nested lists of 0-255.

    ``kernels``: one kernel or a sequence of them (up to 8), each a name (see :data:`KERNELS`),
    rows as text (``"1,0,-1;2,0,-2;1,0,-1"``), or a 3x3 nested list or array of finite weights.
    One kernel gives one array; a sequence gives a list, one array per kernel.

    ``edge``: the lesson's edge image ``min(V + H, 255)`` of two kernels (by default the vertical
    and horizontal Sobel kernels), one array. ``threshold``: 255 where ``V + H >= threshold``,
    else 0 (the lesson uses 255), one array.

    ``border``: ``"valid"`` (the output is (H-2)x(W-2), the lesson's), or ``"zero"``,
    ``"replicate"``, ``"reflect"`` (HxW; see :data:`BORDERS`).

    ``backend``: ``"auto"``, ``"gpu"`` or ``"cpu"``; the engine is opened once per backend and
    kept (see :class:`Engine`). ``threads``: CPU threads for this call (default: every core).
    ``out``: an array, or one per output, to write into instead of new ones (C-contiguous
    ``uint8`` of the output's shape).

    Raises :class:`ArgumentError` (a ``ValueError``) for bad arguments, :class:`InputError` for
    an unreadable file, :class:`LimitError` beyond a limit, :class:`EngineError` when the engine
    fails; all are :class:`gpuconv.Error`.

    >>> import numpy as np, gpuconv
    >>> stripes = np.array([[10, 10, 10, 0, 0, 0, 0]] * 7, dtype=np.uint8)
    >>> gpuconv.filter(stripes, "vertical", backend="cpu")[0]
    array([ 0, 40, 40,  0,  0], dtype=uint8)
    >>> v, h = gpuconv.filter(stripes, backend="cpu")
    >>> int(h.max())
    0
    """
    if not isinstance(backend, str):
        raise ArgumentError(f"backend must be a string, not {type(backend).__name__}")
    return _engine(backend).filter(image, kernels, edge, threshold, border, threads, out)


def kernel(words: str) -> npt.NDArray[np.float32]:
    """The 3x3 weights of a kernel given by name (see :data:`KERNELS`) or as rows of text.

    >>> import gpuconv
    >>> gpuconv.kernel("vertical")
    array([[ 1.,  0., -1.],
           [ 2.,  0., -2.],
           [ 1.,  0., -1.]], dtype=float32)
    """
    if not isinstance(words, str):
        raise ArgumentError(f"a kernel's words must be a string, not {type(words).__name__}")
    return np.array(_gpuconv.kernel_weights(words), dtype=np.float32).reshape(3, 3)


def responses(
    image: ImageLike,
    kernels: Kernels = ("vertical", "horizontal"),
    clip: bool = False,
    border: str = "valid",
    backend: str = "auto",
    threads: int | None = None,
) -> npt.NDArray[Any] | list[npt.NDArray[Any]]:
    """Each kernel's response to ``image``, unclipped by default: the signed sum of each window
    times the kernel, as a Keras ``Conv2D`` layer (no bias, no activation) computes it. An
    ``int32`` array for a whole-number kernel (exact, and the same on every backend), a
    ``float32`` one for a fractional kernel (summed in row-major tap order). ``clip=True`` gives
    :func:`gpuconv.filter`'s ``uint8`` pixels instead, ``clamp(|sum|, 0, 255)``.

    ``image``, ``kernels``, ``border``, ``backend`` and ``threads`` are as for
    :func:`gpuconv.filter`; one kernel gives one array, a sequence a list.

    The lesson's Keras model, two 3x3 filters set to the Sobel kernels, adds the absolute
    responses without clipping: ``abs(v) + abs(h)``.

    >>> import numpy as np, gpuconv
    >>> stripes = np.array([[0, 0, 0, 10, 10, 10, 10]] * 5, dtype=np.uint8)
    >>> v, h = gpuconv.responses(stripes, backend="cpu")
    >>> v[0]
    array([  0, -40, -40,   0,   0], dtype=int32)
    >>> int((np.abs(v) + np.abs(h)).max())
    40
    """
    if not isinstance(backend, str):
        raise ArgumentError(f"backend must be a string, not {type(backend).__name__}")
    return _engine(backend).responses(image, kernels, clip, border, threads)


def _check_border_and_threads(border: Any, threads: Any) -> None:
    if not isinstance(border, str):
        raise ArgumentError(f"border must be a string, one of {', '.join(BORDERS)}")
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or not 1 <= int(threads) <= 1 << 20
    ):
        raise ArgumentError(f"threads must be a whole number from 1 to a few per core, not {threads!r}")


def _as_gray(image: Any) -> npt.NDArray[np.uint8]:
    """``image`` as a 2-D uint8 array, read in place where it already is one."""
    if isinstance(image, (str, os.PathLike)):
        return _gpuconv.load(os.fspath(image))
    if _is_pillow_image(image):
        return _pillow_gray(image)
    if not isinstance(image, np.ndarray):
        if isinstance(image, (bytes, bytearray, memoryview)):
            raise ArgumentError("bytes are not an image here: pass a numpy array or a path")
        try:
            values = np.asarray(image)
        except (ValueError, TypeError) as error:
            raise ArgumentError(f"image is not an array, a Pillow image or a path: {error}") from None
        if values.size == 0:
            raise ArgumentError("image is empty")
        if values.dtype.kind not in "iub":
            raise ArgumentError(f"image is not an array of whole numbers 0 to 255 (dtype {values.dtype})")
        if values.min() < 0 or values.max() > 255:
            raise ArgumentError("image values must lie from 0 to 255")
        image = values.astype(np.uint8)
    if image.dtype != np.uint8:
        raise ArgumentError(
            f"image dtype is {image.dtype}; gpuconv takes uint8 (8-bit gray, or RGB/RGBA): scale and convert it first"
        )
    gray: npt.NDArray[np.uint8] = image
    if gray.ndim == 2:
        return gray
    if gray.ndim == 3 and gray.shape[2] == 1:
        return gray[:, :, 0]
    if image.ndim == 3:
        return _gpuconv.gray(image)
    raise ArgumentError(
        f"image has {image.ndim} dimensions (shape {image.shape}); gpuconv takes a 2-D gray "
        "image or a 3-D RGB or RGBA one"
    )


def _is_pillow_image(image: Any) -> bool:
    return type(image).__module__.startswith("PIL.") and hasattr(image, "convert")


def _pillow_gray(image: Any) -> npt.NDArray[np.uint8]:
    """A Pillow image made gray as gpuconv makes files gray."""
    mode = image.mode
    if mode == "L":
        return np.asarray(image)
    if mode in ("RGB", "RGBA"):
        return _gpuconv.gray(np.asarray(image))
    if mode.startswith("I;16"):
        # round(v / 257), as 16-bit files are read; Pillow's own convert('L') clips instead.
        wide = np.asarray(image).astype(np.uint32)
        return ((wide + 128) // 257).astype(np.uint8)
    return np.asarray(image.convert("L"))


def _listed(kernels: Any) -> Any:
    """``kernels`` as given when it is one name or an array, else as a list, read once (a
    generator is read here, not twice)."""
    if isinstance(kernels, (str, np.ndarray)):
        return kernels
    try:
        return list(kernels)
    except TypeError:
        raise ArgumentError(f"kernels must be a name, a 3x3 matrix or a sequence of them, not {kernels!r}") from None


def _is_one_kernel(kernels: Any) -> bool:
    """Whether ``kernels`` is one kernel (a name or rows of weights) rather than a sequence."""
    if isinstance(kernels, str):
        return True
    if isinstance(kernels, np.ndarray):
        return kernels.ndim == 2
    try:
        rows = list(kernels)
    except TypeError:
        raise ArgumentError(f"kernels must be a name, a 3x3 matrix or a sequence of them, not {kernels!r}") from None
    return bool(rows) and all(
        not isinstance(row, str)
        and isinstance(row, (Sequence, np.ndarray))
        and all(isinstance(w, (numbers.Real, np.number)) for w in row)
        for row in rows
    )


def _kernel_arg(kernel: Any) -> str | list[float]:
    """A kernel as the native module takes it: words, or nine weights in row-major order."""
    if isinstance(kernel, str):
        return kernel
    try:
        weights = np.asarray(kernel, dtype=np.float64)
    except (ValueError, TypeError):
        raise ArgumentError(f"kernel {kernel!r} is not a name or a 3x3 matrix of numbers") from None
    if weights.shape != (3, 3):
        raise ArgumentError(f"a kernel is 3x3; this one has shape {weights.shape}")
    return [float(w) for w in weights.ravel()]
