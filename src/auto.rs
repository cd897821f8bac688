//! What [`BackendChoice::Auto`](crate::BackendChoice::Auto) weighs: whether a GPU pays for
//! itself on a given job, from the job alone and before any GPU is opened.
//!
//! A 3×3 filter on bytes is bound by memory. For an image in host memory the GPU path moves
//! every input byte over the bus and every output byte back, and a process opens the GPU once
//! (finding the adapter, opening the device: 160 ms measured on an NVIDIA H200 machine), while
//! the CPU backend filters in the host's own memory on every core. So the estimate is:
//!
//! - CPU: `pixels × (CPU_NS_PER_PIXEL + CPU_NS_PER_PIXEL_KERNEL × kernels) / threads` per image;
//! - GPU: `GPU_NS_PER_CALL + bytes in and out × GPU_NS_PER_HOST_BYTE` per image, plus
//!   `GPU_OPEN_NS` once when the engine is opened for this job alone (one file, or a batch of a
//!   known count); a stream or a service keeps its engine open, so it counts nothing for that.
//!
//! The constants were measured with `scripts/gpu-bench.sh` on one NVIDIA H200 with 16 host cores
//! (BENCHMARKS.md, `bench/results/gpu-h200*.txt`), both backends through `run` (a fresh output
//! per image, as the command line and the service filter). There the CPU backend wins every
//! host-memory job, whatever its size, kernels or length, and `auto` says so and picks it. The
//! GPU earns its place where the data already lives on it ([`Workload::on_gpu`], the passes of
//! [`GpuEngine::prepare`](crate::GpuEngine::prepare)) and on hosts with few cores. `GPUCONV_AUTO_MIN_MPX` replaces the estimate with a plain
//! threshold: the GPU for images of at least that many megapixels (`0`: always, when there is
//! one), the CPU below.

/// The environment variable that replaces the estimate with a threshold in megapixels.
pub const MIN_MPX_VARIABLE: &str = "GPUCONV_AUTO_MIN_MPX";

/// CPU time per pixel on one thread that every operation pays (reading, clamping, writing), in
/// nanoseconds: from the H200 machine's 16 threads, the vertical-lines filter at 0.94 ns and the
/// edge image at 1.36 ns per pixel and thread.
pub const CPU_NS_PER_PIXEL: f64 = 0.52;
/// CPU time per pixel, thread and kernel, in nanoseconds (same measurement).
pub const CPU_NS_PER_PIXEL_KERNEL: f64 = 0.42;
/// GPU time per byte copied between host memory and the GPU, in nanoseconds: a 256-Mpx image in
/// and its output out in 25.7 ms (vertical lines) and 28.9 ms (edge image) through `run`.
pub const GPU_NS_PER_HOST_BYTE: f64 = 0.05;
/// GPU time per call that does not depend on its size (submission, waiting, mapping), in
/// nanoseconds: a 1-Mpx image took 0.52 to 0.55 ms through `run`.
pub const GPU_NS_PER_CALL: f64 = 450_000.0;
/// Opening the GPU: finding the adapter (78 ms) and opening the device (83 ms), in nanoseconds.
pub const GPU_OPEN_NS: f64 = 160e6;

/// What a job asks of a backend.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Workload {
    /// Pixels of one input image (a typical one for a batch or a stream).
    pub pixels: u64,
    /// Kernels one pass applies.
    pub kernels: u32,
    /// Images one pass writes.
    pub outputs: u32,
    /// Images the engine filters before it is dropped: 1 for one file, the count for a batch,
    /// `None` for a stream of frames or a service, whose engine stays open.
    pub images: Option<u64>,
    /// Whether the pixels already live on the GPU (the caller's buffers or textures), so that
    /// no byte crosses the bus.
    pub on_gpu: bool,
}

/// Which backend a [`Workload`] should run on, and why, in words for a person.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// Whether a GPU pays for itself.
    pub gpu: bool,
    /// Why, with the estimates or the threshold behind it.
    pub reason: String,
}

impl Workload {
    /// The job of applying `operation` to images of `pixels` pixels in host memory: `images` of
    /// them for an engine opened for this job alone, `None` for one kept open.
    pub fn new(operation: &crate::Operation, pixels: u64, images: Option<u64>) -> Self {
        Self {
            pixels,
            kernels: operation.kernels().len() as u32,
            outputs: operation.output_count(),
            images,
            on_gpu: false,
        }
    }

    /// The estimated CPU time of the whole job, in nanoseconds, on `threads` threads.
    pub fn cpu_ns(&self, threads: usize) -> f64 {
        let per_image = self.pixels as f64
            * (CPU_NS_PER_PIXEL + CPU_NS_PER_PIXEL_KERNEL * f64::from(self.kernels))
            / threads.max(1) as f64;
        per_image * self.images.unwrap_or(1) as f64
    }

    /// The estimated GPU time of the whole job, in nanoseconds, opening included when the
    /// engine is opened for this job alone.
    pub fn gpu_ns(&self) -> f64 {
        let bytes = if self.on_gpu {
            0
        } else {
            self.pixels * (1 + u64::from(self.outputs))
        };
        let per_image = GPU_NS_PER_CALL + bytes as f64 * GPU_NS_PER_HOST_BYTE;
        match self.images {
            Some(images) => GPU_OPEN_NS + per_image * images as f64,
            None => per_image,
        }
    }

    /// Whether this job should run on a GPU, by the estimate, or by `min_megapixels` when it is
    /// given. Data already on the GPU stays there. [`decide`](Self::decide) says the same with
    /// the reason in words; this is for a choice made per image, where words are not wanted.
    pub fn prefers_gpu(&self, threads: usize, min_megapixels: Option<f64>) -> bool {
        if self.on_gpu {
            return true;
        }
        match min_megapixels {
            Some(min) => self.pixels as f64 / 1e6 >= min,
            None => self.gpu_ns() < self.cpu_ns(threads),
        }
    }

    /// [`prefers_gpu`](Self::prefers_gpu), and why, in words for a person.
    pub fn decide(&self, threads: usize, min_megapixels: Option<f64>) -> Decision {
        let gpu = self.prefers_gpu(threads, min_megapixels);
        let megapixels = self.pixels as f64 / 1e6;
        if self.on_gpu {
            return Decision {
                gpu,
                reason: "the pixels already live on the GPU".to_owned(),
            };
        }
        if let Some(min) = min_megapixels {
            return Decision {
                gpu,
                reason: format!(
                    "{megapixels:.1}-Mpx images are {} the threshold of {min} Mpx in {MIN_MPX_VARIABLE}",
                    if gpu { "at or above" } else { "below" }
                ),
            };
        }
        let size = if self.pixels < 100_000 {
            format!("{}-px", self.pixels)
        } else {
            format!("{megapixels:.1}-Mpx")
        };
        let job = match self.images {
            Some(1) => format!("one {size} image"),
            Some(n) => format!("{n} {size} images"),
            None => format!("each {size} image"),
        };
        let opening = if self.images.is_some() {
            " with its start-up"
        } else {
            ""
        };
        Decision {
            gpu,
            reason: format!(
                "{job} in host memory, {} kernel{}: the CPU ({threads} threads) is estimated at \
                 {}, a GPU at {}{opening}",
                self.kernels,
                if self.kernels == 1 { "" } else { "s" },
                milliseconds(self.cpu_ns(threads)),
                milliseconds(self.gpu_ns())
            ),
        }
    }
}

fn milliseconds(ns: f64) -> String {
    let ms = ns / 1e6;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

/// `GPUCONV_AUTO_MIN_MPX`, when it is set to something: a number of megapixels (`0` for any
/// image), or an error naming the variable and the value.
pub fn min_megapixels_from_env() -> crate::Result<Option<f64>> {
    let Ok(value) = std::env::var(MIN_MPX_VARIABLE) else {
        return Ok(None);
    };
    if value.trim().is_empty() {
        return Ok(None);
    }
    match value.trim().parse::<f64>() {
        Ok(min) if min >= 0.0 && min.is_finite() => Ok(Some(min)),
        _ => Err(crate::Error::InvalidSetting {
            name: MIN_MPX_VARIABLE,
            value,
            expected: "a number of megapixels (0 or more)",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two kernels make an edge image; any other count writes a response per kernel.
    fn workload(pixels: u64, kernels: u32, images: Option<u64>) -> Workload {
        Workload {
            pixels,
            kernels,
            outputs: if kernels == 2 { 1 } else { kernels },
            images,
            on_gpu: false,
        }
    }

    #[test]
    fn the_estimates_reproduce_the_measurements_they_come_from() {
        // 256 Mpx on the H200 machine's 16 threads through `run`: 15.8 ms vertical, 22.8 ms
        // edge on the CPU; 25.7 and 28.9 ms on the GPU, the device already open.
        let pixels = 16384 * 16384;
        let close = |estimate: f64, measured: f64| (estimate / 1e6 - measured).abs() < 2.0;
        assert!(close(workload(pixels, 1, Some(1)).cpu_ns(16), 15.8));
        assert!(close(workload(pixels, 2, Some(1)).cpu_ns(16), 22.8));
        assert!(close(workload(pixels, 1, None).gpu_ns(), 25.7));
        assert!(close(workload(pixels, 2, None).gpu_ns(), 28.9));
    }

    #[test]
    fn sixteen_cores_beat_the_gpu_on_every_host_memory_job() {
        for pixels in [1 << 18, 1 << 20, 1 << 24, 1 << 28, 1 << 30] {
            for kernels in 1..=8 {
                for images in [Some(1), Some(1000), None] {
                    let decision = workload(pixels, kernels, images).decide(16, None);
                    assert!(
                        !decision.gpu,
                        "{pixels} px, {kernels} kernels: {decision:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn few_cores_hand_large_or_long_lived_work_to_the_gpu() {
        // A 2-core host: one small image is not worth opening a GPU; a stream of 1080p edge
        // frames (1.4 ms against 0.7), and one gigapixel image, are.
        assert!(!workload(512 * 512, 2, Some(1)).decide(2, None).gpu);
        assert!(workload(1920 * 1080, 2, None).decide(2, None).gpu);
        assert!(workload(1 << 30, 2, Some(1)).decide(2, None).gpu);
    }

    #[test]
    fn data_on_the_gpu_stays_there_and_a_threshold_replaces_the_estimate() {
        let on_gpu = Workload {
            on_gpu: true,
            ..workload(64, 1, Some(1))
        };
        assert!(on_gpu.decide(64, None).gpu);
        let small = workload(999_999, 1, Some(1));
        assert!(!small.decide(1, Some(1.0)).gpu);
        assert!(workload(1_000_000, 1, Some(1)).decide(64, Some(1.0)).gpu);
        assert!(small.decide(64, Some(0.0)).gpu);
        let reason = small.decide(1, Some(1.0)).reason;
        assert!(reason.contains("GPUCONV_AUTO_MIN_MPX"), "{reason}");
    }
}
