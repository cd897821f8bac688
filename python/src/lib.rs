//! `gpuconv._gpuconv`: the native half of the Python package. It takes arguments already put in
//! shape by `gpuconv/__init__.py` (kernels as names or nine weights, a 2-D `uint8` array) and
//! does the work with the GIL released: reading images where they lie, filtering on the
//! engine, writing into numpy arrays. Errors become the package's exception classes
//! (`gpuconv/_errors.py`), with the library's one-line messages.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use gpuconv::{
    BackendChoice, Border, Combine, CpuBackend, ErrorKind, GrayView, Kernel, Operation, SumPlane,
};
use numpy::ndarray::{Array2, ArrayView, Dimension};
use numpy::{
    PyArray2, PyArrayMethods, PyReadonlyArray2, PyReadonlyArray3, PyReadwriteArray2,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use rayon::prelude::*;

/// A kernel as `gpuconv/__init__.py` passes it: words the library parses (a name, rows, or
/// `NAME=` either), or nine weights in row-major order.
#[derive(FromPyObject)]
enum KernelArg {
    Words(String),
    Weights([f64; 9]),
}

/// The library's error as the package's exception: `ArgumentError` (a `ValueError`) for what the
/// caller asked, else by the library's sorting (`ErrorKind`) into `InputError`, `LimitError`
/// and `EngineError`.
fn raise(error: gpuconv::Error) -> PyErr {
    use gpuconv::Error as E;
    let class = match &error {
        E::InvalidKernel { .. }
        | E::InvalidOperation(_)
        | E::NoKernel
        | E::ResponsesWithoutCombine
        | E::ImageTooSmall { .. } => "ArgumentError",
        _ => match error.kind() {
            ErrorKind::Input => "InputError",
            ErrorKind::Limit => "LimitError",
            ErrorKind::RunWide => "EngineError",
        },
    };
    exception(class, error.to_string())
}

/// An exception of `gpuconv._errors` by its class name.
fn exception(class: &str, message: String) -> PyErr {
    Python::attach(|py| {
        let made = py
            .import("gpuconv._errors")
            .and_then(|module| module.getattr(class))
            .and_then(|class| class.call1((message.clone(),)));
        match made {
            Ok(value) => PyErr::from_value(value),
            Err(_) => PyRuntimeError::new_err(message),
        }
    })
}

fn argument_error(message: String) -> PyErr {
    exception("ArgumentError", message)
}

/// The operation the arguments describe, checked by the library.
fn operation(
    kernels: Vec<KernelArg>,
    combine: &str,
    threshold: Option<u16>,
    border: &str,
) -> PyResult<Operation> {
    let kernels = kernels
        .into_iter()
        .enumerate()
        .map(|(i, kernel)| {
            let default_name = format!("kernel{}", i + 1);
            match kernel {
                KernelArg::Words(words) => Kernel::parse(&words, &default_name),
                // f64 to f32 rounds to nearest; a finite weight beyond f32's range, which would
                // turn infinite, is named as given.
                KernelArg::Weights(weights) => {
                    match weights
                        .iter()
                        .find(|w| w.is_finite() && w.abs() > f64::from(f32::MAX))
                    {
                        Some(w) => Err(gpuconv::Error::InvalidKernel {
                            spec: default_name,
                            reason: format!("weight {w} is beyond any kernel's range"),
                        }),
                        None => Kernel::new(default_name, weights.map(|w| w as f32)),
                    }
                }
            }
        })
        .collect::<gpuconv::Result<Vec<_>>>()
        .map_err(raise)?;
    let combine = match (combine, threshold) {
        ("none", None) => Combine::None,
        ("edge", None) => Combine::Edge,
        ("threshold", Some(t)) => Combine::Threshold(t),
        _ => {
            return Err(argument_error(format!(
                "combine '{combine}' with threshold {threshold:?}"
            )));
        }
    };
    let border: Border = border.parse().map_err(raise)?;
    Operation::new(kernels, combine, false)
        .map(|operation| operation.with_border(border))
        .map_err(raise)
}

/// `values` (row-major) as a numpy array of `shape`, which takes them over without a copy.
fn owned_array<T: numpy::Element>(
    py: Python<'_>,
    values: Vec<T>,
    shape: [usize; 2],
) -> Bound<'_, PyArray2<T>> {
    let array = Array2::from_shape_vec(shape, values).expect("rows × columns values");
    PyArray2::from_owned_array(py, array)
}

/// An array's (rows, columns) as the library's (width, height).
fn dimensions((height, width): (usize, usize)) -> PyResult<(u32, u32)> {
    match (u32::try_from(width), u32::try_from(height)) {
        (Ok(w), Ok(h)) => Ok((w, h)),
        _ => Err(argument_error(format!(
            "image is {width}×{height}: too large"
        ))),
    }
}

/// An array's samples in row-major order: read in place when they are packed that way already,
/// otherwise (strided, transposed, reversed) copied once.
fn packed<'a, D: Dimension>(array: &'a ArrayView<'a, u8, D>) -> PyResult<Cow<'a, [u8]>> {
    if let Some(samples) = array.as_slice() {
        return Ok(Cow::Borrowed(samples));
    }
    let mut copy = Vec::new();
    copy.try_reserve_exact(array.len()).map_err(|_| {
        exception(
            "LimitError",
            format!(
                "out of memory copying a strided array of {} bytes into rows",
                array.len()
            ),
        )
    })?;
    copy.extend(array.iter().copied());
    Ok(Cow::Owned(copy))
}

/// `threads=` may ask for at most this many threads per core.
const MAX_THREADS_PER_CORE: usize = 4;

/// How many thread counts keep their pools at once.
const KEPT_POOLS: usize = 4;

fn available_cores() -> usize {
    // Asked once: on Linux the answer reads cgroup files, tens of microseconds a call.
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from))
}

/// CPU backends by thread count, shared by every engine of the process and made on first use:
/// each is the calling thread and a pool of the others, so that a call starts at once rather
/// than waiting for a sleeping pool thread to wake.
static BACKENDS: std::sync::LazyLock<Mutex<HashMap<usize, CpuBackend>>> =
    std::sync::LazyLock::new(|| Mutex::new(HashMap::new()));

/// The CPU backend with `threads` threads; `None`: as many as rayon's global pool has (every
/// core, or `RAYON_NUM_THREADS`), the count the engine's description gives.
fn cpu_with(py: Python<'_>, threads: Option<usize>) -> PyResult<CpuBackend> {
    let default = rayon::current_num_threads();
    let threads = match threads {
        None => default,
        Some(threads) => {
            let most = MAX_THREADS_PER_CORE * available_cores();
            if threads > most {
                return Err(argument_error(format!(
                    "threads={threads} is more than {MAX_THREADS_PER_CORE} per core of this \
                     machine's {} (at most {most})",
                    available_cores()
                )));
            }
            threads
        }
    };
    let poisoned = |_| exception("EngineError", "a thread pool panicked".into());
    if let Some(cpu) = BACKENDS.lock().map_err(poisoned)?.get(&threads) {
        return Ok(cpu.clone());
    }
    // Started without the GIL: other Python threads go on meanwhile.
    let cpu = py
        .detach(|| CpuBackend::with_threads(threads))
        .map_err(raise)?;
    let mut backends = BACKENDS.lock().map_err(poisoned)?;
    // A few counts are kept, the default always; beyond, one is let go (its threads end with
    // its last call).
    if backends.len() >= KEPT_POOLS
        && let Some(&other) = backends
            .keys()
            .find(|&&count| count != threads && count != default)
    {
        backends.remove(&other);
    }
    Ok(backends.entry(threads).or_insert(cpu).clone())
}

/// A filtering engine kept between calls: a GPU's device, pipelines and buffers stay open; the
/// CPU backends are the process's ([`cpu_with`]).
#[pyclass(frozen, module = "gpuconv._gpuconv")]
struct Engine {
    /// The library's engine, when it has a GPU open (alone, or routed beside the CPU).
    gpu: Option<Mutex<gpuconv::Engine>>,
    description: String,
    fallback: Option<String>,
}

#[pymethods]
impl Engine {
    /// `backend`: "auto" (a hardware GPU when there is one, else the CPU), "gpu" or "cpu".
    #[new]
    fn new(py: Python<'_>, backend: &str) -> PyResult<Self> {
        let choice = match backend {
            "auto" => BackendChoice::Auto,
            "gpu" => BackendChoice::Gpu,
            "cpu" => BackendChoice::Cpu,
            other => {
                return Err(argument_error(format!(
                    "backend '{other}' is not one of auto, gpu, cpu"
                )));
            }
        };
        let engine = py
            .detach(|| {
                let engine = gpuconv::Engine::new(choice)?;
                // Auto keeps a GPU open for large images and sends small ones to the CPU, whose
                // start costs nothing, as the service does.
                if choice == BackendChoice::Auto {
                    engine.into_routed()
                } else {
                    Ok(engine)
                }
            })
            .map_err(raise)?;
        Ok(Self {
            description: engine.describe(),
            fallback: engine.fallback_reason().map(str::to_owned),
            gpu: engine.is_gpu().then(|| Mutex::new(engine)),
        })
    }

    /// A line saying where images are filtered, such as "cpu (8 threads)".
    #[getter]
    fn description(&self) -> &str {
        &self.description
    }

    /// Why "auto" chose the CPU, or None.
    #[getter]
    fn fallback_reason(&self) -> Option<&str> {
        self.fallback.as_deref()
    }

    /// Whether a GPU is open.
    #[getter]
    fn has_gpu(&self) -> bool {
        self.gpu.is_some()
    }

    /// Filters `image` (a C-contiguous 2-D uint8 array, or any other 2-D uint8 array, copied
    /// first) into `outputs` (C-contiguous uint8 arrays of the output size, one per output
    /// image: the combined one, or one per kernel), or into new arrays when `outputs` is None.
    /// Returns the arrays written.
    #[pyo3(signature = (image, kernels, combine, threshold, border, threads, outputs))]
    #[allow(
        clippy::too_many_arguments,
        reason = "one call from the Python wrapper, by position"
    )]
    fn run<'py>(
        &self,
        py: Python<'py>,
        image: PyReadonlyArray2<'py, u8>,
        kernels: Vec<KernelArg>,
        combine: &str,
        threshold: Option<u16>,
        border: &str,
        threads: Option<usize>,
        outputs: Option<Vec<Bound<'py, PyArray2<u8>>>>,
    ) -> PyResult<Vec<Bound<'py, PyArray2<u8>>>> {
        let operation = operation(kernels, combine, threshold, border)?;
        let array = image.as_array();
        let (width, height) = dimensions(array.dim())?;
        let (out_width, out_height) = operation.output_size(width, height).map_err(raise)?;
        let shape = [out_height as usize, out_width as usize];
        let count = operation.output_count() as usize;
        let pixels = packed(&array)?;
        let view = GrayView::from_raw(width, height, &pixels[..]).expect("width × height pixels");
        let outputs = match outputs {
            Some(outputs) => {
                if outputs.len() != count {
                    return Err(argument_error(format!(
                        "out holds {} arrays; this call writes {count}",
                        outputs.len()
                    )));
                }
                for out in &outputs {
                    if out.shape() != shape || !out.is_c_contiguous() {
                        return Err(argument_error(format!(
                            "an out array has shape ({}){}; it must be a writeable, C-contiguous \
                             uint8 array of shape ({}, {})",
                            out.shape()
                                .iter()
                                .map(usize::to_string)
                                .collect::<Vec<_>>()
                                .join(", "),
                            if out.is_c_contiguous() {
                                ""
                            } else {
                                ", not C-contiguous"
                            },
                            shape[0],
                            shape[1]
                        )));
                    }
                }
                outputs
            }
            None => {
                // The library allocates the planes (zeroed pages, huge ones where the system
                // has them), and numpy takes them over without a copy.
                let planes = self.filter_new(py, &view, &operation, threads)?;
                return Ok(planes
                    .into_iter()
                    .map(|plane| owned_array(py, plane, shape))
                    .collect());
            }
        };
        let mut writers: Vec<PyReadwriteArray2<'py, u8>> = Vec::with_capacity(count);
        for out in &outputs {
            writers.push(
                out.try_readwrite()
                    .map_err(|e| argument_error(format!("an out array: {e}")))?,
            );
        }
        let mut planes: Vec<&mut [u8]> = writers
            .iter_mut()
            .map(|w| w.as_slice_mut().expect("C-contiguous"))
            .collect();

        self.filter_into(py, &view, &operation, &mut planes, threads)?;
        drop(planes);
        drop(writers);
        Ok(outputs)
    }

    /// Each kernel's unclipped, signed sums over `image` (a 2-D uint8 array): an int32 array
    /// for a whole-number kernel, a float32 one for a fractional kernel.
    #[pyo3(signature = (image, kernels, border, threads))]
    fn sums<'py>(
        &self,
        py: Python<'py>,
        image: PyReadonlyArray2<'py, u8>,
        kernels: Vec<KernelArg>,
        border: &str,
        threads: Option<usize>,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let responses = operation(kernels, "none", None, border)?;
        let operation = Operation::sums(responses.kernels().to_vec())
            .map(|sums| sums.with_border(responses.border()))
            .map_err(raise)?;
        let array = image.as_array();
        let (width, height) = dimensions(array.dim())?;
        let (out_width, out_height) = operation.output_size(width, height).map_err(raise)?;
        let shape = [out_height as usize, out_width as usize];
        let pixels = packed(&array)?;
        let view = GrayView::from_raw(width, height, &pixels[..]).expect("width × height pixels");
        let sums = self.dispatch(
            py,
            &view,
            &operation,
            threads,
            (),
            |engine, ()| engine.run_sums(&view, &operation),
            |cpu, ()| cpu.run_sums(&view, &operation),
        )?;
        // numpy takes each plane over without a copy.
        Ok(sums
            .planes
            .into_iter()
            .map(|plane| match plane {
                SumPlane::Integer(sums) => owned_array(py, sums, shape).into_any(),
                SumPlane::Float(sums) => owned_array(py, sums, shape).into_any(),
            })
            .collect())
    }
}

impl Engine {
    /// Runs `on_gpu` with the engine's GPU when it has one and sends `view` there, else
    /// `on_cpu` with the CPU backend of `threads` threads, all with the GIL released: a thread
    /// waiting for its turn with the GPU holds up no other Python thread. `arg` goes to the one
    /// that runs.
    #[allow(
        clippy::too_many_arguments,
        reason = "the call, and its two ways to run"
    )]
    fn dispatch<A: Send, T: Send>(
        &self,
        py: Python<'_>,
        view: &GrayView<'_>,
        operation: &Operation,
        threads: Option<usize>,
        arg: A,
        on_gpu: impl FnOnce(&mut gpuconv::Engine, A) -> gpuconv::Result<T> + Send,
        on_cpu: impl FnOnce(&CpuBackend, A) -> gpuconv::Result<T> + Send,
    ) -> PyResult<T> {
        let cpu = cpu_with(py, threads)?;
        let (width, height) = view.dimensions();
        py.detach(|| {
            if let Some(engine) = &self.gpu {
                let mut engine = engine.lock().map_err(|_| gpuconv::Error::EnginePanicked)?;
                if engine.backend_for(width, height, operation) == "gpu" {
                    return on_gpu(&mut engine, arg);
                }
            }
            on_cpu(&cpu, arg)
        })
        .map_err(raise)
    }

    /// [`filter_into`](Self::filter_into) into new planes, the library's, in output order.
    fn filter_new(
        &self,
        py: Python<'_>,
        view: &GrayView<'_>,
        operation: &Operation,
        threads: Option<usize>,
    ) -> PyResult<Vec<Vec<u8>>> {
        let output = self.dispatch(
            py,
            view,
            operation,
            threads,
            (),
            |engine, ()| engine.run_view(view, operation),
            |cpu, ()| cpu.run_view(view, operation),
        )?;
        Ok(output
            .combined
            .into_iter()
            .chain(output.responses)
            .map(image::GrayImage::into_raw)
            .collect())
    }

    /// Filters `view` into `planes` (see [`dispatch`](Self::dispatch)).
    fn filter_into(
        &self,
        py: Python<'_>,
        view: &GrayView<'_>,
        operation: &Operation,
        planes: &mut [&mut [u8]],
        threads: Option<usize>,
    ) -> PyResult<()> {
        self.dispatch(
            py,
            view,
            operation,
            threads,
            planes,
            |engine, planes| engine.run_view_into(view, operation, planes),
            |cpu, planes| cpu.run_view_into(view, operation, planes),
        )
    }
}

/// The gray image of an RGB or RGBA `uint8` array (H×W×3 or H×W×4), by the library's luma rule
/// (Pillow's `convert('L')`), alpha ignored.
#[pyfunction]
fn gray<'py>(
    py: Python<'py>,
    image: PyReadonlyArray3<'py, u8>,
) -> PyResult<Bound<'py, PyArray2<u8>>> {
    let array = image.as_array();
    let (height, width, channels) = array.dim();
    if !(channels == 3 || channels == 4) {
        return Err(argument_error(format!(
            "a 3-D image has 3 (RGB) or 4 (RGBA) channels; this one has {channels}"
        )));
    }
    let samples = packed(&array)?;
    let out = PyArray2::<u8>::zeros(py, [height, width], false);
    {
        let mut writer = out.readwrite();
        let pixels = writer.as_slice_mut().expect("a new array is C-contiguous");
        py.detach(|| {
            pixels
                .par_chunks_mut(width.max(1) * 64)
                .zip(samples.par_chunks(width.max(1) * 64 * channels))
                .for_each(|(gray, samples)| {
                    for (pixel, sample) in gray.iter_mut().zip(samples.chunks_exact(channels)) {
                        *pixel = gpuconv::io::luma([sample[0], sample[1], sample[2]]);
                    }
                });
        });
    }
    Ok(out)
}

/// The nine weights, row by row, of a kernel given in words (a name, or rows as text).
#[pyfunction]
fn kernel_weights(words: &str) -> PyResult<[f32; 9]> {
    Kernel::parse(words, "kernel")
        .map(|kernel| *kernel.weights())
        .map_err(raise)
}

/// The gray image in the file at `path`, read as the command line reads it.
#[pyfunction]
fn load<'py>(py: Python<'py>, path: PathBuf) -> PyResult<Bound<'py, PyArray2<u8>>> {
    let image = py.detach(|| gpuconv::io::load_gray(&path)).map_err(raise)?;
    let (width, height) = image.dimensions();
    let pixels = Array2::from_shape_vec((height as usize, width as usize), image.into_raw())
        .expect("width × height pixels");
    Ok(PyArray2::from_owned_array(py, pixels))
}

#[pymodule]
fn _gpuconv(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<Engine>()?;
    let kernels: Vec<&str> = gpuconv::kernel::NAMED_KERNELS
        .iter()
        .map(|(name, _, _)| *name)
        .collect();
    module.add("KERNELS", kernels)?;
    let borders: Vec<&str> = Border::ALL.iter().map(|border| border.name()).collect();
    module.add("BORDERS", borders)?;
    module.add_function(wrap_pyfunction!(gray, module)?)?;
    module.add_function(wrap_pyfunction!(load, module)?)?;
    module.add_function(wrap_pyfunction!(kernel_weights, module)?)?;
    Ok(())
}
