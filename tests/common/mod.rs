//! Helpers shared by the integration tests.
#![allow(dead_code, reason = "each test crate uses a different subset")]

pub mod app;
pub mod server;

use std::ops::{Deref, DerefMut};
use std::sync::{Mutex, MutexGuard, OnceLock};

use gpuconv::{CpuBackend, Engine, FilterOutput, GpuEngine, Operation};
use image::GrayImage;

/// One GPU engine for the whole test binary (device creation is the slow part), or `None` when
/// there is no adapter. Under `CI=true` a missing adapter fails the test instead: GPU tests must
/// never skip silently in CI. Tests take turns with it; what one test sets on it (a strip cap,
/// rows per invocation) is undone when its guard is dropped, so it never leaks into the next.
pub fn gpu() -> Option<SharedGpu> {
    static ENGINE: OnceLock<Option<Mutex<Engine>>> = OnceLock::new();
    let engine = ENGINE.get_or_init(|| match GpuEngine::new() {
        Ok(engine) => Some(Mutex::new(Engine::from_gpu(engine))),
        Err(error) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("CI=true but no GPU adapter: {error}. Install mesa-vulkan-drivers.");
            }
            eprintln!("warning: GPU tests skipped, no adapter: {error}");
            None
        }
    });
    engine
        .as_ref()
        .map(|m| SharedGpu(m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())))
}

/// A test's turn with the shared GPU engine: derefs to the [`GpuEngine`], and
/// [`engine`](Self::engine) gives the same engine as an [`Engine`].
pub struct SharedGpu(MutexGuard<'static, Engine>);

impl SharedGpu {
    /// The shared engine as an [`Engine`], for the APIs that take one.
    pub fn engine(&mut self) -> &mut Engine {
        &mut self.0
    }
}

impl Deref for SharedGpu {
    type Target = GpuEngine;

    fn deref(&self) -> &GpuEngine {
        self.0.gpu().expect("built on the GPU")
    }
}

impl DerefMut for SharedGpu {
    fn deref_mut(&mut self) -> &mut GpuEngine {
        self.0.gpu_mut().expect("built on the GPU")
    }
}

impl Drop for SharedGpu {
    fn drop(&mut self) {
        self.set_max_strip_rows(None);
        self.set_rows_per_invocation(gpuconv::gpu::DEFAULT_ROWS_PER_INVOCATION);
    }
}

/// Runs `body` with an engine on every backend: the CPU, then the shared GPU engine when
/// there is an adapter (under `CI=true` there must be). `body` gets the backend's name for its
/// messages.
pub fn on_every_backend(mut body: impl FnMut(&str, &mut Engine)) {
    body("cpu", &mut Engine::from(CpuBackend::new()));
    if let Some(mut gpu) = gpu() {
        body("gpu", gpu.engine());
    }
}

/// `operation`'s outputs from the reference loop, combined image first, as raw pixels.
pub fn reference_outputs(image: &GrayImage, operation: &Operation) -> Vec<Vec<u8>> {
    raw_outputs(gpuconv::reference::run(image, operation))
}

/// The one image an operation of one output makes, by the reference loop.
pub fn reference_image(image: &GrayImage, operation: &Operation) -> GrayImage {
    let output = gpuconv::reference::run(image, operation);
    output
        .combined
        .or_else(|| output.responses.into_iter().next())
        .expect("an operation makes at least one image")
}

/// An output's images, combined image first, as raw pixels.
pub fn raw_outputs(output: FilterOutput) -> Vec<Vec<u8>> {
    output
        .combined
        .into_iter()
        .chain(output.responses)
        .map(GrayImage::into_raw)
        .collect()
}

/// Streams `image` through `engine` with `filter_rows`, in bands of `band_rows` (the engine's
/// choice when `None`), collecting every output's rows.
pub fn streamed(
    engine: &mut Engine,
    image: &GrayImage,
    operation: &Operation,
    band_rows: Option<u32>,
) -> Vec<Vec<u8>> {
    use gpuconv::pipeline::{CollectRows, ImageRows, RowSink, filter_rows};
    let mut collected: Vec<CollectRows> = (0..operation.output_count())
        .map(|_| CollectRows::default())
        .collect();
    let sinks: Vec<Box<dyn RowSink + '_>> = collected
        .iter_mut()
        .map(|c| Box::new(c) as Box<dyn RowSink + '_>)
        .collect();
    filter_rows(
        engine,
        &mut ImageRows::new(image),
        operation,
        sinks,
        band_rows,
    )
    .unwrap();
    collected.into_iter().map(|c| c.rows().to_vec()).collect()
}

/// `image` as PNG bytes.
pub fn png(image: &GrayImage) -> Vec<u8> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut bytes, image::ImageFormat::Png)
        .expect("PNG encodes");
    bytes.into_inner()
}

/// Runs `operation` on the CPU backend.
pub fn cpu(image: &GrayImage, operation: &Operation) -> FilterOutput {
    CpuBackend::new()
        .run(image, operation)
        .expect("CPU backend runs")
}

/// An image from literal rows.
pub fn gray(rows: &[&[u8]]) -> GrayImage {
    let height = rows.len() as u32;
    let width = rows[0].len() as u32;
    GrayImage::from_raw(width, height, rows.concat()).expect("rows of equal length")
}

/// An image's pixels as rows, for readable assertions.
pub fn rows(image: &GrayImage) -> Vec<Vec<u8>> {
    image
        .as_raw()
        .chunks(image.width() as usize)
        .map(<[u8]>::to_vec)
        .collect()
}

/// Asserts two images are equal, naming the first differing pixel (and writing both images to
/// the target directory for a look) when they are not.
pub fn assert_same(actual: &GrayImage, expected: &GrayImage, what: &str) {
    assert_eq!(
        actual.dimensions(),
        expected.dimensions(),
        "{what}: sizes differ"
    );
    if let Some((i, (a, e))) = actual
        .as_raw()
        .iter()
        .zip(expected.as_raw())
        .enumerate()
        .find(|(_, (a, e))| a != e)
    {
        let width = actual.width() as usize;
        let dir = std::env::temp_dir().join("gpuconv-test-failures");
        let _ = std::fs::create_dir_all(&dir);
        let name = what.replace(|c: char| !c.is_ascii_alphanumeric(), "_");
        let _ = actual.save(dir.join(format!("{name}-actual.png")));
        let _ = expected.save(dir.join(format!("{name}-expected.png")));
        panic!(
            "{what}: pixel (x={}, y={}) is {a}, expected {e} (images written to {})",
            i % width,
            i / width,
            dir.display()
        );
    }
}

/// Asserts two filter outputs are equal, image by image.
pub fn assert_same_output(actual: &FilterOutput, expected: &FilterOutput, what: &str) {
    assert_eq!(
        actual.combined.is_some(),
        expected.combined.is_some(),
        "{what}: combined image presence"
    );
    if let (Some(a), Some(e)) = (&actual.combined, &expected.combined) {
        assert_same(a, e, &format!("{what}, combined"));
    }
    assert_eq!(
        actual.responses.len(),
        expected.responses.len(),
        "{what}: number of responses"
    );
    for (k, (a, e)) in actual.responses.iter().zip(&expected.responses).enumerate() {
        assert_same(a, e, &format!("{what}, response {k}"));
    }
}

/// A deterministic pseudo-random image (SplitMix64), pixels in `0..=amplitude`, never all zero.
pub fn random_image(width: u32, height: u32, amplitude: u8, seed: u64) -> GrayImage {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let modulus = u64::from(amplitude) + 1;
    let mut image = GrayImage::from_fn(width, height, |_, _| {
        image::Luma([(next() % modulus) as u8])
    });
    // A random image of nothing but zeros would hide a backend that writes nothing.
    if image.as_raw().iter().all(|&p| p == 0) {
        image.put_pixel(width / 2, height / 2, image::Luma([amplitude.max(1)]));
    }
    image
}

/// The names of the entries in `dir`, sorted.
pub fn listing(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `image` as an 8-bit gray TIFF whose Orientation tag is `orientation` (1 to 8, EXIF's
/// numbering).
#[allow(dead_code)]
pub fn oriented_tiff(image: &GrayImage, orientation: u16) -> Vec<u8> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    let mut encoder = tiff::encoder::TiffEncoder::new(&mut bytes).unwrap();
    let mut page = encoder
        .new_image::<tiff::encoder::colortype::Gray8>(image.width(), image.height())
        .unwrap();
    page.encoder()
        .write_tag(tiff::tags::Tag::Orientation, orientation)
        .unwrap();
    page.write_data(image.as_raw()).unwrap();
    bytes.into_inner()
}
