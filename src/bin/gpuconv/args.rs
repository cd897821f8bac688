//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// 3×3 image convolution (Sobel-style line and edge filters) on the GPU with wgpu, or on the CPU.
#[derive(Debug, Parser)]
#[command(name = "gpuconv", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Filter images with one or more 3×3 kernels, or into an edge image.
    #[command(after_long_help = kernels_help(), after_help = "Run 'gpuconv filter --help' for the kernel names.")]
    Filter(FilterArgs),
    /// Reproduce the lesson: print its matrices and write side-by-side figures of its pictures.
    Demo(DemoArgs),
    /// List the GPU adapters wgpu sees and the limits that matter to gpuconv.
    Info,
    /// Time both backends, stage by stage, on synthetic images from 1 to 268 megapixels.
    Bench(BenchArgs),
    /// Filter video frames from standard input to standard output: raw 8-bit gray frames
    /// (--size WxH), or a Y4M stream of gray frames, written back as Y4M.
    #[command(after_long_help = STREAM_EXAMPLES)]
    Stream(StreamArgs),
    /// Serve filters over HTTP with the engine kept warm: POST /v1/filter, a page to try it at
    /// /, health at /healthz and /readyz, Prometheus metrics at /metrics.
    #[command(after_long_help = SERVE_EXAMPLES)]
    Serve(ServeArgs),
}

const SERVE_EXAMPLES: &str = "Examples:
  gpuconv serve
  curl --data-binary @img/camera.png -o edges.png 'http://127.0.0.1:8080/v1/filter?edge=true'
  GPUCONV_API_KEY=$(cat key) gpuconv serve --bind 0.0.0.0:8080 --workers 8
Anything but a loopback address needs an API key (GPUCONV_API_KEY or --api-key-file); with one
set, every /v1/ and /metrics request must send 'Authorization: Bearer KEY'.
Exit status: 0 after a clean stop (SIGTERM, SIGHUP or Ctrl-C: requests in flight finish within
--shutdown-grace), 1 when requests were cut short or the server could not start, 2 a usage
error; a second signal stops at once with 128+N.";

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The address and port to listen on. Anything but loopback needs an API key.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8080")]
    pub bind: String,

    /// Where to compute.
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    pub backend: BackendArg,

    /// A file holding the API key (a trailing newline is ignored); or set GPUCONV_API_KEY.
    #[arg(long, value_name = "PATH")]
    pub api_key_file: Option<PathBuf>,

    /// The largest request body: bytes, or with K, M, G (powers of 1024); larger ones get 413.
    #[arg(long, value_name = "SIZE", default_value = "64M", value_parser = gpuconv::io::parse_bytes)]
    pub max_body_bytes: u64,

    /// Refuse images whose header claims more pixels than this (422).
    #[arg(
        long,
        value_name = "N",
        default_value_t = gpuconv::serve::DEFAULT_MAX_PIXELS,
        value_parser = gpuconv::io::parse_positive_count
    )]
    pub max_pixels: u64,

    /// The memory all workers may take together for decoding and outputs, each an equal share;
    /// images over a share get 422 [default: half of this machine's memory]
    #[arg(long, value_name = "SIZE", value_parser = gpuconv::io::parse_bytes)]
    pub max_memory: Option<u64>,

    /// Images decoded, filtered and encoded at once [default: the cores, at most 8]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub workers: Option<u32>,

    /// Requests that may wait beyond the workers' (reading their bodies or for a worker);
    /// more get 503 with Retry-After.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub queue: u32,

    /// Seconds a request may take from its headers to its response (503 beyond).
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = parse_seconds)]
    pub request_timeout: std::time::Duration,

    /// Seconds a client may take to send its headers (the connection is closed) or its body
    /// (408); and the window over which a client taking its answer must keep --min-read-rate.
    #[arg(long, value_name = "SECS", default_value = "15", value_parser = parse_seconds)]
    pub read_timeout: std::time::Duration,

    /// Connections open at once; more wait to be accepted.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,

    /// The slowest a client may take in its answer, in bytes per second (or with K, M: powers
    /// of 1024), over each --read-timeout it keeps the server waiting; a slower one, or one
    /// taking nothing, is let go and the answer's memory given back.
    #[arg(long, value_name = "SIZE", default_value = "64K", value_parser = gpuconv::io::parse_bytes)]
    pub min_read_rate: u64,

    /// Without an API key, requests must name this machine as their Host (localhost,
    /// 127.0.0.1, [::1]): this adds another name it may be reached by (repeatable).
    #[arg(long, value_name = "NAME")]
    pub allowed_host: Vec<String>,

    /// Seconds to let requests in flight finish after SIGTERM, SIGHUP or Ctrl-C.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_seconds)]
    pub shutdown_grace: std::time::Duration,

    /// No line per request on stderr.
    #[arg(short, long)]
    pub quiet: bool,
}

/// A positive number of seconds, fractions allowed.
fn parse_seconds(text: &str) -> Result<std::time::Duration, String> {
    match text.trim().trim_end_matches('s').parse::<f64>() {
        Ok(s) if s > 0.0 && s <= 86_400.0 => Ok(std::time::Duration::from_secs_f64(s)),
        _ => Err(format!(
            "'{text}' is not a number of seconds above 0 and at most 86400"
        )),
    }
}

const STREAM_EXAMPLES: &str = "Examples:
  ffmpeg -i in.mp4 -f yuv4mpegpipe -pix_fmt gray - | gpuconv stream --edge | ffmpeg -f yuv4mpegpipe -i - edges.mkv
  ffmpeg -i in.mp4 -f rawvideo -pix_fmt gray - | gpuconv stream --size 1920x1080 -k vertical > lines.gray";

#[derive(Debug, Args)]
pub struct StreamArgs {
    /// The frames' size, WIDTHxHEIGHT: needed for raw frames (a Y4M header gives it).
    #[arg(long, value_name = "WxH", value_parser = parse_size)]
    pub size: Option<(u32, u32)>,

    #[command(flatten)]
    pub operation: OperationArgs,

    /// What to do with an incomplete last frame: report it and exit 1 once every complete frame
    /// is written (`error`), or drop it silently as ffmpeg does (`drop`).
    #[arg(long, value_enum, default_value_t = PartialArg::Error)]
    pub partial: PartialArg,

    /// The most memory the frames in flight may take (three frames and three filtered ones):
    /// bytes, or with K, M, G (powers of 1024); larger frames are refused before any is read.
    /// Default: half the memory this process may use.
    #[arg(long, value_name = "SIZE", value_parser = gpuconv::io::parse_bytes)]
    pub max_memory: Option<u64>,

    /// Where to compute.
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    pub backend: BackendArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PartialArg {
    /// Write every complete frame, then say how many bytes were left over, and exit 1.
    Error,
    /// Drop the incomplete frame and exit 0.
    Drop,
}

/// `WIDTHxHEIGHT`, each at least 1 (the valid border needs 3, which the filter checks).
fn parse_input_format(text: &str) -> Result<image::ImageFormat, String> {
    gpuconv::io::readable_format(text).ok_or_else(|| {
        format!(
            "not a format gpuconv reads ({})",
            gpuconv::io::READABLE_EXTENSIONS.join(", ")
        )
    })
}

fn parse_size(text: &str) -> Result<(u32, u32), String> {
    let parsed = text
        .split_once(['x', 'X'])
        .and_then(|(w, h)| Some((w.trim().parse::<u32>().ok()?, h.trim().parse::<u32>().ok()?)));
    match parsed {
        Some((w, h)) if w >= 1 && h >= 1 => Ok((w, h)),
        _ => Err(format!(
            "'{text}' is not WIDTHxHEIGHT (for example 1920x1080)"
        )),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    /// A hardware GPU when there is one, else the CPU with a notice (software renderers such as
    /// llvmpipe count as none).
    Auto,
    /// The GPU, software renderers included; an error when there is no adapter.
    Gpu,
    /// The CPU (all cores).
    Cpu,
}

impl From<BackendArg> for gpuconv::BackendChoice {
    fn from(arg: BackendArg) -> Self {
        match arg {
            BackendArg::Auto => Self::Auto,
            BackendArg::Gpu => Self::Gpu,
            BackendArg::Cpu => Self::Cpu,
        }
    }
}

/// `--border`: the library's [`gpuconv::Border`], its names and help taken from there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BorderArg(pub gpuconv::Border);

impl clap::ValueEnum for BorderArg {
    fn value_variants<'a>() -> &'a [Self] {
        static VARIANTS: std::sync::LazyLock<Vec<BorderArg>> =
            std::sync::LazyLock::new(|| gpuconv::Border::ALL.map(BorderArg).to_vec());
        &VARIANTS
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.0.name()).help(self.0.summary()))
    }
}

#[derive(Debug, Args)]
pub struct FilterArgs {
    /// Input images (PNG, JPEG, PGM/PNM, BMP, TIFF, GIF, WebP, TGA, QOI); colour becomes gray.
    /// `-` reads one image from standard input (its format recognised from its bytes). With
    /// several, a bad one is reported by name and the others are still written; the run then
    /// exits 1 after a summary line, "N written, M failed".
    #[arg(required_unless_present = "from_list", value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,

    /// Also filter the images listed in FILE, one path per line (`-`: read the list from
    /// standard input), read as they are filtered, for lists too long for a command line:
    /// `find scans -name '*.png' | gpuconv filter --from-list - --edge -o edges/`.
    #[arg(long, value_name = "FILE")]
    pub from_list: Option<PathBuf>,

    /// Read inputs whose bytes do not say their format as FORMAT (an extension: tga, png, ...):
    /// TGA has no signature, so TGA on standard input needs it unless its header is plain. A
    /// format the bytes do say wins.
    #[arg(long, value_name = "FORMAT", value_parser = parse_input_format)]
    pub input_format: Option<image::ImageFormat>,

    #[command(flatten)]
    pub operation: OperationArgs,

    /// With --edge or --threshold, also write each kernel's response.
    #[arg(long)]
    pub responses: bool,

    /// With --edge: write |V| + |H| unclipped (the lesson's Keras model: a Conv2D with the two
    /// kernels, no bias) as a 16-bit image, PNG, PGM or TIFF, for one input and one output
    /// file. The kernels need whole-number weights whose largest |V| + |H| fits 16 bits (the
    /// lesson's reach 2040).
    #[arg(long, requires = "edge", conflicts_with_all = ["responses", "from_list"])]
    pub unclipped: bool,

    /// Output file (one input, one image out; its extension picks the format), or a folder that
    /// receives INPUTSTEM-KERNEL.FORMAT files: when there are several inputs or outputs, or the
    /// path is an existing folder or ends with '/'. `-` writes the one image to standard output,
    /// in the format --format names (PNG by default), and nothing else goes there.
    #[arg(short, long, value_name = "PATH")]
    pub output: PathBuf,

    /// Format of files written into an output folder, or to standard output with `-o -`, as a
    /// file extension [default: png]. A single output file takes its format from its own
    /// extension.
    #[arg(long, value_name = "EXT")]
    pub format: Option<String>,

    /// How PNG outputs are compressed: `fast` (rows predicted from the row above: about a
    /// fifth larger), `default` (each row's predictor chosen on a sample: as small as gpuconv's
    /// PNGs have always been), or `small` (each row's best predictor and zlib's deflate: about
    /// a fifth smaller, about seven times slower).
    /// Every core compresses either way.
    #[arg(long, value_name = "HOW", default_value = "default", value_parser = parse_compression)]
    pub compression: gpuconv::io::Compression,

    /// Turn each input upright by its TIFF or EXIF orientation before filtering (by default
    /// images are filtered as stored, as the lesson's Pillow `Image.open` gives them). An image
    /// to be turned is read whole.
    #[arg(long)]
    pub orient: bool,

    /// Where to compute.
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    pub backend: BackendArg,

    /// Print decode, upload, GPU kernel, readback and encode times for each input on stderr.
    #[arg(long)]
    pub timings: bool,

    /// No progress bar (shown on a terminal only: files for a batch, rows for one image of 64
    /// megapixels or more).
    #[arg(short, long)]
    pub quiet: bool,

    #[command(flatten)]
    pub limits: LimitArgs,
}

/// What to compute: the kernels, how they combine, and the border.
#[derive(Debug, Args)]
pub struct OperationArgs {
    /// A kernel: a name (see below), rows like "1,0,-1;2,0,-2;1,0,-1" (a leading minus sign is
    /// fine: -k "-1,0,1;-2,0,2;-1,0,1"), or NAME=ROWS to name the output files. Repeat for several
    /// kernels, computed in one pass.
    #[arg(
        short,
        long = "kernel",
        value_name = "KERNEL",
        allow_hyphen_values = true
    )]
    pub kernels: Vec<String>,

    /// Write the edge image min(V + H, 255) of two kernels (default: vertical and horizontal).
    #[arg(long, conflicts_with = "threshold")]
    pub edge: bool,

    /// Write the binary edge image: 255 where V + H >= T, else 0 (the lesson uses 255).
    #[arg(
        long,
        value_name = "T",
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(u16).range(0..=510)
    )]
    pub threshold: Option<u16>,

    /// What the 3×3 windows see beyond the image's edges.
    #[arg(long, value_enum, default_value_t = BorderArg(gpuconv::Border::Valid))]
    pub border: BorderArg,
}

/// What one input may take; both are checked from its header, before decoding.
#[derive(Debug, Args)]
pub struct LimitArgs {
    /// Refuse inputs whose header claims more pixels than this.
    #[arg(
        long,
        value_name = "N",
        default_value_t = gpuconv::io::DEFAULT_MAX_PIXELS,
        allow_negative_numbers = true,
        value_parser = gpuconv::io::parse_positive_count
    )]
    pub max_pixels: u64,

    /// Refuse inputs whose decoding and outputs would take more memory than this: bytes, or
    /// with K, M, G, T (powers of 1024) [default: half of this machine's memory]
    #[arg(long, value_name = "SIZE", allow_negative_numbers = true, value_parser = gpuconv::io::parse_bytes)]
    pub max_memory: Option<u64>,
}

impl LimitArgs {
    /// The memory budget in force: `--max-memory`, or half of the machine.
    pub fn memory_budget(&self) -> u64 {
        self.max_memory
            .unwrap_or_else(gpuconv::io::default_memory_budget)
    }
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Folder for the figures.
    #[arg(short, long, default_value = "demo-out", value_name = "DIR")]
    pub output: PathBuf,

    /// Where to compute.
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    pub backend: BackendArg,
}

fn kernels_help() -> String {
    let mut help = String::from("Kernels by name:\n");
    for (name, description, _) in gpuconv::kernel::NAMED_KERNELS {
        help.push_str(&format!("  {name:<20} {description}\n"));
    }
    let aliases: Vec<String> = gpuconv::kernel::KERNEL_ALIASES
        .iter()
        .map(|(alias, name)| format!("{alias} = {name}"))
        .collect();
    help.push_str(&format!("Aliases: {}.\n", aliases.join(", ")));
    help.push_str(
        "\nOutputs are 'valid' cross-correlations, (W-2)x(H-2) pixels of clamp(|sum|, 0, 255).\n\
         Exit status: 0 all written; 1 a bad input or output (one line each, then a summary for\n\
         batches); 2 a usage error; 128+N when stopped by signal N (partial files are removed).\n\
         Examples:\n  gpuconv filter img/camera.png --edge -o edges.png\n  \
         gpuconv filter img/*.png -k vertical -k horizontal -k \"blur=gaussian-blur\" -o out/\n  \
         gpuconv filter photo.jpg -k \"1,0,-1;2,0,-2;1,0,-1\" -o lines.pgm --backend cpu",
    );
    help
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// What the 3×3 windows see beyond the image's edges, for every operation timed.
    #[arg(long, value_enum, default_value_t = BorderArg(gpuconv::Border::Valid))]
    pub border: BorderArg,

    /// Image sizes, WIDTHxHEIGHT, comma-separated.
    #[arg(
        long,
        default_value = "1024x1024,4096x4096,16384x16384",
        conflicts_with = "input"
    )]
    pub sizes: String,

    /// Time this image instead of synthetic ones (to compare with other tools on the same input).
    #[arg(long, value_name = "PATH")]
    pub input: Option<PathBuf>,

    /// Operations: `edge`, or kernels by name or rows (`1,2,1;2,4,2;1,2,1`), comma-separated;
    /// kernels joined by `+` run in one pass, each response written (`vertical+horizontal+x`).
    #[arg(long, default_value = "vertical,edge")]
    pub ops: String,

    /// Backends to time: cpu, gpu or both.
    #[arg(long, default_value = "both", value_parser = ["cpu", "gpu", "both"])]
    pub backend: String,

    /// Timed runs per configuration, after one warm-up; medians are reported.
    #[arg(
        long,
        default_value_t = 5,
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub repeat: u32,

    /// Refuse sizes whose images would take more memory than this: bytes, or with K, M, G, T
    /// (powers of 1024) [default: half of this machine's memory]
    #[arg(long, value_name = "SIZE", allow_negative_numbers = true, value_parser = gpuconv::io::parse_bytes)]
    pub max_memory: Option<u64>,

    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,

    /// Cap the GPU's strips at this many output rows (default: the engine's own choice), to
    /// measure how strip size and overlap change the GPU path's total time.
    #[arg(long, value_name = "ROWS", value_parser = clap::value_parser!(u32).range(1..))]
    pub strip_rows: Option<u32>,

    /// Output rows each GPU shader invocation computes (1 to 8; default: the engine's), to
    /// choose the shader's layout by measurement.
    #[arg(long, value_name = "ROWS", value_parser = clap::value_parser!(u32).range(1..=8))]
    pub rows_per_invocation: Option<u32>,

    /// Time only images from host memory and back, not also the passes over buffers and
    /// textures already on the GPU.
    #[arg(long)]
    pub no_resident: bool,

    /// Time start-up instead: from process start to the first result written, running
    /// `gpuconv filter` on a small PNG as a fresh process per run, per backend (and `auto`).
    #[arg(long, conflicts_with_all = ["sizes", "input", "ops", "strip_rows", "rows_per_invocation", "border"])]
    pub startup: bool,
}

/// `--compression`'s value, by the library's names.
fn parse_compression(name: &str) -> Result<gpuconv::io::Compression, String> {
    gpuconv::io::Compression::from_name(name).ok_or_else(|| {
        let names: Vec<&str> = gpuconv::io::Compression::ALL
            .iter()
            .map(|(n, _)| *n)
            .collect();
        format!("the choices are {}", names.join(", "))
    })
}
