//! The library's error type.

use std::path::PathBuf;

/// Everything that can go wrong in gpuconv, each with the numbers or names a user needs to fix it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A kernel specification could not be parsed or has weights gpuconv refuses.
    #[error("invalid kernel '{}': {reason}", crate::text::escape(spec))]
    InvalidKernel {
        /// The text that was given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The requested operation does not fit the kernels given (for example `--edge` with three kernels).
    #[error("invalid operation: {0}")]
    InvalidOperation(String),

    /// An operation asked for in words names no kernel and no combination.
    #[error("no kernel given: name a kernel, or ask for the edge or threshold image")]
    NoKernel,

    /// An operation asked for in words keeps responses beside a combined image it does not
    /// make.
    #[error(
        "responses are kept beside an edge or threshold image; without one, every kernel's response is the output anyway"
    )]
    ResponsesWithoutCombine,

    /// A setting read from the environment that cannot be understood.
    #[error("{name}='{}' is not {expected}", crate::text::escape(value))]
    InvalidSetting {
        /// The environment variable.
        name: &'static str,
        /// What it was set to.
        value: String,
        /// What it must be.
        expected: &'static str,
    },

    /// A CPU backend's own threads could not be started (or zero were asked for).
    #[error("could not start {threads} threads for the CPU backend: {detail}")]
    Threads {
        /// How many were asked for.
        threads: usize,
        /// Why not.
        detail: String,
    },

    /// The image is smaller than the 3×3 kernel, so a 'valid' convolution has no output pixel.
    #[error("image is {width}×{height}, smaller than the 3×3 kernel (at least 3×3 is needed)")]
    ImageTooSmall {
        /// Image width in pixels.
        width: u32,
        /// Image height in pixels.
        height: u32,
    },

    /// The image needs a GPU buffer larger than the device allows.
    #[error(
        "image is {width}×{height}: its {what} needs {needed} {unit}, more than this GPU's limit \
         {limit_name} = {limit} {unit} (the CPU backend handles images this large)"
    )]
    TooLargeForDevice {
        /// Image width in pixels.
        width: u32,
        /// Image height in pixels.
        height: u32,
        /// Which buffer is too large.
        what: &'static str,
        /// How much it needs, in `unit`s.
        needed: u64,
        /// What `needed` and `limit` count: `bytes` or `workgroups`.
        unit: &'static str,
        /// The wgpu limit that is exceeded.
        limit_name: &'static str,
        /// The device's value of that limit.
        limit: u64,
    },

    /// No GPU adapter could be found.
    #[error(
        "no GPU adapter found{detail} (on Debian, 'apt-get install mesa-vulkan-drivers libvulkan1' \
         gives a software Vulkan device)"
    )]
    NoAdapter {
        /// Extra detail, such as the value of `WGPU_ADAPTER_NAME` that matched nothing.
        detail: String,
    },

    /// The adapter was found but a device could not be created from it.
    #[error("could not open GPU device '{adapter}': {source}")]
    RequestDevice {
        /// Adapter name.
        adapter: String,
        /// wgpu's error.
        #[source]
        source: wgpu::RequestDeviceError,
    },

    /// The device given to gpuconv lacks a feature or limit it needs.
    #[error("the GPU device lacks what gpuconv needs: {0}")]
    DeviceUnsuitable(String),

    /// A buffer or texture given to [`GpuEngine::prepare`](crate::GpuEngine::prepare) cannot be
    /// used as asked: wrong usage flags, format, size or alignment.
    #[error("{what}: {problem}")]
    InvalidResource {
        /// Which resource: `source buffer`, `target texture`, ...
        what: &'static str,
        /// What is wrong and how to fix it.
        problem: String,
    },

    /// wgpu reported an error while gpuconv was using the device (out of memory, device lost, ...).
    #[error("GPU error: {0}")]
    Gpu(String),

    /// A shared engine's GPU device was lost (or the engine panicked), and it is being
    /// re-created: worth trying again shortly.
    #[error("the GPU device was lost and is being re-created")]
    EngineLost,

    /// A shared engine panicked while filtering (a bug): it is being re-created, but the same
    /// input may well panic again.
    #[error("the engine failed while filtering this image (a bug: please report it)")]
    EnginePanicked,

    /// An output would overwrite one of the inputs (the same file, whatever path reaches it).
    #[error(
        "refusing to overwrite input '{}' with an output (it is the same file as an input)",
        crate::text::escape_path(path)
    )]
    OutputIsInput {
        /// The file that is both an input and an output.
        path: PathBuf,
    },

    /// Two outputs would be written to the same file.
    #[error(
        "two outputs would both be written to '{}'",
        crate::text::escape_path(path)
    )]
    OutputTwice {
        /// The output path.
        path: PathBuf,
    },

    /// Reading back results from the GPU failed.
    #[error("could not read results back from the GPU: {0}")]
    Readback(String),

    /// An input file could not be read or decoded.
    #[error("cannot read image '{}': {source}", crate::text::escape_path(path))]
    Decode {
        /// The input path.
        path: PathBuf,
        /// The decoder's error.
        #[source]
        source: image::ImageError,
    },

    /// An input file's header claims more pixels than allowed.
    #[error(
        "cannot read image '{}': {width}×{height} is {} pixels, more than the limit of {max_pixels}",
        crate::text::escape_path(path),
        u64::from(*width) * u64::from(*height)
    )]
    TooManyPixels {
        /// The input path.
        path: PathBuf,
        /// Width in the header.
        width: u32,
        /// Height in the header.
        height: u32,
        /// The limit in force.
        max_pixels: u64,
    },

    /// An input file ends before the image its header describes: cut short in a download or a
    /// copy, or a header that claims far more pixels than the data can hold.
    #[error(
        "cannot read image '{}': the file is truncated: {detail}",
        crate::text::escape_path(path)
    )]
    Truncated {
        /// The input path.
        path: PathBuf,
        /// What is missing.
        detail: String,
    },

    /// An input file's data is damaged or breaks its format's rules.
    #[error(
        "cannot read image '{}': the file is corrupt: {detail}",
        crate::text::escape_path(path)
    )]
    Corrupt {
        /// The input path.
        path: PathBuf,
        /// The decoder's complaint.
        detail: String,
    },

    /// Decoding and filtering an input would take more memory than the budget allows.
    #[error(
        "cannot read image '{}': its {width}×{height} pixels ({what}) need about {} to decode and \
         filter, more than the memory budget of {}",
        crate::text::escape_path(path),
        crate::units::format_bytes(*needed),
        crate::units::format_bytes(*budget)
    )]
    OverBudget {
        /// The input path.
        path: PathBuf,
        /// Width in the header.
        width: u32,
        /// Height in the header.
        height: u32,
        /// The pixel layout the decoder produces, such as `8-bit RGBA`.
        what: String,
        /// The estimate of what the run would allocate, in bytes.
        needed: u64,
        /// The budget in force, in bytes.
        budget: u64,
    },

    /// An input file is too large for its decoder, which holds it whole, to fit the budget.
    #[error(
        "cannot read image '{}': the file is {}, and its decoder holds it in memory twice, more \
         than the memory budget of {}",
        crate::text::escape_path(path),
        crate::units::format_bytes(*bytes),
        crate::units::format_bytes(*budget)
    )]
    FileOverBudget {
        /// The input path.
        path: PathBuf,
        /// The file's size.
        bytes: u64,
        /// The budget in force, in bytes.
        budget: u64,
    },

    /// Frames of this size would take more memory in flight than the budget allows.
    #[error(
        "frames of {width}×{height} need about {} in flight (three frames and three filtered \
         ones), more than the memory budget of {}",
        crate::units::format_bytes(*needed),
        crate::units::format_bytes(*budget)
    )]
    FramesOverBudget {
        /// Frame width.
        width: u32,
        /// Frame height.
        height: u32,
        /// Bytes the frames in flight would take.
        needed: u64,
        /// The budget.
        budget: u64,
    },

    /// A decoder asked for more memory than the budget allows, beyond what the header showed.
    #[error(
        "cannot read image '{}': its decoder asked for more memory than the budget of {}",
        crate::text::escape_path(path),
        crate::units::format_bytes(*budget)
    )]
    DecoderOverBudget {
        /// The input path.
        path: PathBuf,
        /// The budget in force, in bytes.
        budget: u64,
    },

    /// The system refused an allocation.
    #[error(
        "out of memory: {what} needs {}, which the system refused",
        crate::units::format_bytes(*bytes)
    )]
    OutOfMemory {
        /// What the memory was for, naming the input when there is one.
        what: String,
        /// The size asked for.
        bytes: u64,
    },

    /// An input file uses a feature of its format that gpuconv does not read.
    #[error(
        "cannot read image '{}': it is {what}, which gpuconv does not read",
        crate::text::escape_path(path)
    )]
    Unsupported {
        /// The input path.
        path: PathBuf,
        /// What the file uses, in plain words ("TIFF with LZMA compression").
        what: String,
    },

    /// An input file is in no format gpuconv reads, judged by its contents and its extension.
    #[error(
        "cannot read image '{}': not a PNG, JPEG, PNM, BMP, TIFF, GIF, WebP, TGA or QOI file",
        crate::text::escape_path(path)
    )]
    UnknownFormat {
        /// The input path.
        path: PathBuf,
    },

    /// An output file could not be encoded or written.
    #[error("cannot write '{}': {reason}", crate::text::escape_path(path))]
    Write {
        /// The output path.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },

    /// A stream of video frames that gpuconv cannot read: a bad Y4M header, a colour space
    /// other than gray, no frame size.
    #[error("cannot read the frames: {0}")]
    Frames(String),

    /// A stream of frames ended inside a frame; every complete frame was written first.
    #[error(
        "the frames ended {leftover} bytes into a frame of {frame_bytes} bytes; the {frames} complete frames before it were written"
    )]
    ShortFrame {
        /// Complete frames written.
        frames: u64,
        /// Bytes of the incomplete last frame.
        leftover: usize,
        /// Bytes of a whole frame.
        frame_bytes: usize,
    },

    /// Reading or writing a stream of frames failed.
    #[error("{what}: {source}")]
    FrameIo {
        /// Which side, "reading the frames" or "writing the frames".
        what: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },

    /// The output path's extension names no image format gpuconv can write.
    #[error(
        "cannot write '{}': unknown or unsupported image format (use .png, .pgm, .bmp, .tif, .jpg, ...)",
        crate::text::escape_path(path)
    )]
    UnsupportedOutputFormat {
        /// The output path.
        path: PathBuf,
    },
}

/// `Result` with gpuconv's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What an [`Error`] says about the work around it: the one place errors are sorted, for the
/// command line (a batch goes on or stops), the service (a 4xx or a 503) and apps alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// This input, its output or the operation asked for is at fault (unreadable, corrupt,
    /// cut short, too small, an unknown format, a kernel that makes no sense, an output that
    /// cannot be written): other inputs can go on.
    Input,
    /// This input is genuine but over a limit (pixels, the memory budget, the device's sizes,
    /// the memory free right now): other inputs can go on, and a higher limit may let it
    /// through.
    Limit,
    /// Nothing can be filtered as things stand (no GPU, a GPU or device error, a bad setting,
    /// the frames' stream itself failing): a batch stops, a service is not ready.
    RunWide,
}

impl Error {
    /// The file the error names, if it names one (reading or writing errors): where it does
    /// not, a caller filtering a file says which.
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            Error::Decode { path, .. }
            | Error::TooManyPixels { path, .. }
            | Error::Truncated { path, .. }
            | Error::Corrupt { path, .. }
            | Error::OverBudget { path, .. }
            | Error::FileOverBudget { path, .. }
            | Error::DecoderOverBudget { path, .. }
            | Error::UnknownFormat { path, .. }
            | Error::Unsupported { path, .. }
            | Error::Write { path, .. }
            | Error::UnsupportedOutputFormat { path, .. }
            | Error::OutputIsInput { path }
            | Error::OutputTwice { path } => Some(path),
            _ => None,
        }
    }

    /// Which [`ErrorKind`] this error is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidKernel { .. }
            | Error::InvalidOperation(_)
            | Error::NoKernel
            | Error::ResponsesWithoutCombine
            | Error::ImageTooSmall { .. }
            | Error::InvalidResource { .. }
            | Error::Decode { .. }
            | Error::Truncated { .. }
            | Error::Corrupt { .. }
            | Error::UnknownFormat { .. }
            | Error::Unsupported { .. }
            | Error::Write { .. }
            | Error::OutputIsInput { .. }
            | Error::OutputTwice { .. }
            // A bug this input set off: the engine is re-created, and a batch goes on.
            | Error::EnginePanicked
            | Error::Frames(_)
            | Error::ShortFrame { .. }
            | Error::UnsupportedOutputFormat { .. } => ErrorKind::Input,
            Error::TooManyPixels { .. }
            | Error::TooLargeForDevice { .. }
            | Error::OverBudget { .. }
            | Error::FileOverBudget { .. }
            | Error::DecoderOverBudget { .. }
            | Error::FramesOverBudget { .. }
            | Error::OutOfMemory { .. } => ErrorKind::Limit,
            Error::NoAdapter { .. }
            | Error::RequestDevice { .. }
            | Error::DeviceUnsuitable(_)
            | Error::Gpu(_)
            | Error::EngineLost
            | Error::Readback(_)
            | Error::InvalidSetting { .. }
            | Error::Threads { .. }
            | Error::FrameIo { .. } => ErrorKind::RunWide,
        }
    }

    /// Whether this input failed only for want of memory budget: it may pass alone with the
    /// whole budget (a batch worker holds a share of it).
    pub fn is_over_budget(&self) -> bool {
        matches!(
            self,
            Error::OverBudget { .. }
                | Error::FileOverBudget { .. }
                | Error::DecoderOverBudget { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_sort_into_the_inputs_fault_a_limit_or_the_whole_run() {
        let path = || PathBuf::from("in.png");
        assert_eq!(Error::NoKernel.kind(), ErrorKind::Input);
        let corrupt = Error::Corrupt {
            path: path(),
            detail: String::new(),
        };
        assert_eq!(corrupt.kind(), ErrorKind::Input);
        let over = Error::FileOverBudget {
            path: path(),
            bytes: 10,
            budget: 1,
        };
        assert_eq!(over.kind(), ErrorKind::Limit);
        assert!(over.is_over_budget() && !corrupt.is_over_budget());
        assert_eq!(Error::Gpu("lost".into()).kind(), ErrorKind::RunWide);
    }
}
