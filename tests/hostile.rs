//! Files a hostile user would craft, each a few hundred bytes: headers that claim gigapixels,
//! data cut short in every format, and the CLI's answer to each: one line naming the file and
//! the problem, exit status 1, no output file, and little memory spent on the way.

mod common;

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::random_image;
use gpuconv::Error;
use gpuconv::io::{self, ReadLimits};
use image::{DynamicImage, ImageFormat};

/// A PNG chunk with its length and CRC.
fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut chunk = (data.len() as u32).to_be_bytes().to_vec();
    chunk.extend_from_slice(kind);
    chunk.extend_from_slice(data);
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(data);
    chunk.extend_from_slice(&crc.finalize().to_be_bytes());
    chunk
}

/// 65 bytes: a PNG whose header claims 65535×65535 RGBA at 16 bits (32 GiB decoded).
fn png_bomb() -> Vec<u8> {
    let mut header = Vec::new();
    header.extend_from_slice(&65535u32.to_be_bytes());
    header.extend_from_slice(&65535u32.to_be_bytes());
    header.extend_from_slice(&[16, 6, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(png_chunk(b"IHDR", &header));
    // An empty zlib stream.
    png.extend(png_chunk(
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    ));
    png.extend(png_chunk(b"IEND", &[]));
    png
}

/// A PAM claiming 60000×60000 RGBA at 16 bits (27 GiB), with 100 bytes of data.
fn pam_bomb() -> Vec<u8> {
    let mut pam =
        b"P7\nWIDTH 60000\nHEIGHT 60000\nDEPTH 4\nMAXVAL 65535\nTUPLTYPE RGB_ALPHA\nENDHDR\n"
            .to_vec();
    pam.extend_from_slice(&[7; 100]);
    pam
}

/// A GIF whose logical screen is 65535×65535 (16 GiB of RGBA canvas) around a 1×1 frame.
fn gif_bomb() -> Vec<u8> {
    let mut gif = b"GIF89a".to_vec();
    gif.extend_from_slice(&65535u16.to_le_bytes());
    gif.extend_from_slice(&65535u16.to_le_bytes());
    // A global colour table of two entries: black, white.
    gif.extend_from_slice(&[0x80, 0, 0, 0, 0, 0, 255, 255, 255]);
    // An image descriptor at (0, 0), 1×1, then LZW data (minimum code size 2) and the trailer.
    gif.extend_from_slice(&[0x2C, 0, 0, 0, 0, 1, 0, 1, 0, 0, 2, 2, 0x44, 0x01, 0, 0x3B]);
    gif
}

/// A run-length coded BMP of 60000×60000 (10 GiB decoded as RGB) whose data is one
/// end-of-bitmap code: 1080 bytes with its palette.
fn bmp_rle_bomb() -> Vec<u8> {
    let palette_bytes = 256 * 4;
    let data_offset = 14 + 40 + palette_bytes;
    let data = [0u8, 1];
    let mut bmp = b"BM".to_vec();
    bmp.extend_from_slice(&((data_offset + data.len()) as u32).to_le_bytes());
    bmp.extend_from_slice(&[0; 4]);
    bmp.extend_from_slice(&(data_offset as u32).to_le_bytes());
    bmp.extend_from_slice(&40u32.to_le_bytes());
    bmp.extend_from_slice(&60000i32.to_le_bytes());
    bmp.extend_from_slice(&60000i32.to_le_bytes());
    bmp.extend_from_slice(&1u16.to_le_bytes()); // planes
    bmp.extend_from_slice(&8u16.to_le_bytes()); // bits per pixel
    bmp.extend_from_slice(&1u32.to_le_bytes()); // BI_RLE8
    bmp.extend_from_slice(&(data.len() as u32).to_le_bytes());
    bmp.extend_from_slice(&[0; 8]); // resolution
    bmp.extend_from_slice(&256u32.to_le_bytes());
    bmp.extend_from_slice(&0u32.to_le_bytes());
    for i in 0..256u32 {
        bmp.extend_from_slice(&[i as u8, i as u8, i as u8, 0]);
    }
    bmp.extend_from_slice(&data);
    bmp
}

/// A real 16×16 JPEG whose frame header is patched to say 65500×65500.
fn jpeg_bomb() -> Vec<u8> {
    let mut jpeg = encode(
        &DynamicImage::ImageLuma8(random_image(16, 16, 255, 3)),
        ImageFormat::Jpeg,
    );
    let sof = jpeg
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("a baseline frame header");
    // Marker, length (2), precision (1), then height and width.
    jpeg[sof + 5..sof + 7].copy_from_slice(&65500u16.to_be_bytes());
    jpeg[sof + 7..sof + 9].copy_from_slice(&65500u16.to_be_bytes());
    jpeg
}

fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut bytes = Cursor::new(Vec::new());
    image.write_to(&mut bytes, format).unwrap();
    bytes.into_inner()
}

fn bombs() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("bomb.png", png_bomb()),
        ("bomb.pam", pam_bomb()),
        ("bomb.gif", gif_bomb()),
        ("bomb.bmp", bmp_rle_bomb()),
        ("bomb.jpg", jpeg_bomb()),
    ]
}

/// Limits with a budget no machine's default goes under, so the results do not depend on
/// the machine the tests run on.
fn limits(max_memory: u64) -> ReadLimits {
    ReadLimits {
        max_memory,
        ..ReadLimits::default()
    }
}

#[test]
fn bombs_are_small_and_refused_before_anything_large_is_allocated() {
    for (name, bytes) in bombs() {
        assert!(bytes.len() < 1200, "{name} is {} bytes", bytes.len());
        // 2 GiB: far below what each header claims, far above what refusing needs.
        let error = io::decode_gray(&bytes, Path::new(name), &limits(2 << 30)).unwrap_err();
        let message = error.to_string();
        assert!(message.contains(name), "{name}: {message}");
        match (name, &error) {
            // Each of these files is far too short for its header: truncated, whatever the budget.
            ("bomb.png" | "bomb.pam" | "bomb.jpg", Error::Truncated { detail, .. }) => {
                assert!(detail.contains("header says"), "{name}: {message}");
            }
            // A screen 64 times its first frame is no real GIF, and gigapixels from a
            // kilobyte of run-length code no real BMP; both are legal, and refused.
            ("bomb.gif" | "bomb.bmp", Error::Corrupt { detail, .. }) => {
                assert!(detail.contains("implausible"), "{name}: {message}");
            }
            _ => panic!("{name}: unexpected {error:?}"),
        }
    }
}

#[test]
fn the_truncation_checks_hold_with_an_unlimited_budget() {
    for (name, bytes) in bombs() {
        let error = io::decode_gray(&bytes, Path::new(name), &limits(u64::MAX)).unwrap_err();
        assert!(
            matches!(error, Error::Truncated { .. } | Error::Corrupt { .. }),
            "{name}: {error:?}"
        );
    }
}

#[test]
fn a_genuine_image_over_the_budget_names_its_size_and_the_flag() {
    let png = encode(
        &DynamicImage::ImageRgb8(image::RgbImage::from_fn(300, 200, |x, y| {
            image::Rgb([x as u8, y as u8, 7])
        })),
        ImageFormat::Png,
    );
    // Read a row at a time: 60 000 gray bytes, a 900-byte row and 59 004 of output, over
    // 100 000 (the whole RGB image is never held).
    // A JPEG's decoder holds the file whole: a file larger than half the budget is refused
    // before it is read.
    let jpeg = jpeg_bomb();
    let error =
        io::decode_gray(&jpeg, Path::new("big.jpg"), &limits(jpeg.len() as u64)).unwrap_err();
    assert!(matches!(error, Error::FileOverBudget { .. }), "{error:?}");
    let error = io::decode_gray(&png, Path::new("photo.png"), &limits(100_000)).unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, Error::OverBudget { .. }), "{message}");
    // The library names no flags: the CLI adds them (see the bomb test).
    for part in [
        "photo.png",
        "300×200",
        "8-bit RGB",
        "memory budget of 97.7 KiB",
    ] {
        assert!(message.contains(part), "'{part}' missing from: {message}");
    }
    assert!(io::decode_gray(&png, Path::new("photo.png"), &limits(300_000)).is_ok());
}

/// Every format gpuconv reads, made by the `image` crate from a random colour image; `pgm`
/// binary, `webp` lossless.
fn every_format() -> Vec<(&'static str, Vec<u8>)> {
    let colour = DynamicImage::ImageRgb8(image::RgbImage::from_fn(61, 47, |x, y| {
        let v = random_image(61, 47, 255, 11).get_pixel(x, y)[0];
        image::Rgb([v, v.wrapping_mul(3), (x * y) as u8])
    }));
    let gray = DynamicImage::ImageLuma8(colour.to_luma8());
    vec![
        ("png", encode(&colour, ImageFormat::Png)),
        ("jpg", encode(&colour, ImageFormat::Jpeg)),
        (
            "progressive.jpg",
            std::fs::read("tests/fixtures/progressive.jpg").unwrap(),
        ),
        ("pgm", encode(&gray, ImageFormat::Pnm)),
        ("bmp", encode(&colour, ImageFormat::Bmp)),
        ("tif", encode(&colour, ImageFormat::Tiff)),
        ("gif", encode(&colour.to_rgba8().into(), ImageFormat::Gif)),
        ("webp", encode(&colour, ImageFormat::WebP)),
        ("tga", encode(&colour, ImageFormat::Tga)),
        ("qoi", encode(&colour, ImageFormat::Qoi)),
    ]
}

#[test]
fn files_cut_short_in_every_format_are_truncated_or_corrupt_never_zeros() {
    for (extension, bytes) in every_format() {
        let name = format!("cut.{extension}");
        io::decode_gray(&bytes, Path::new(&name), &ReadLimits::default())
            .unwrap_or_else(|e| panic!("the whole {extension} file must decode: {e}"));
        for percent in [30, 60, 90, 99] {
            let cut = &bytes[..bytes.len() * percent / 100];
            let result = io::decode_gray(cut, Path::new(&name), &ReadLimits::default());
            let error = match result {
                Err(error) => error,
                Ok(_) => panic!("{extension} cut at {percent}% was accepted"),
            };
            let message = error.to_string();
            assert!(
                matches!(error, Error::Truncated { .. } | Error::Corrupt { .. }),
                "{extension} at {percent}%: {error:?}"
            );
            assert!(message.contains(&name), "{message}");
            assert!(
                message.contains("truncated") || message.contains("corrupt"),
                "{extension} at {percent}%: {message}"
            );
        }
    }
}

#[test]
fn one_channel_float_tiff_is_read_by_the_float_rule() {
    use tiff::encoder::{TiffEncoder, colortype};
    let (width, height) = (7u32, 5u32);
    let samples: Vec<f32> = (0..width * height)
        .map(|i| i as f32 / 20.0 - 0.3) // below 0, within 0..1, and above 1
        .collect();
    let mut bytes = Cursor::new(Vec::new());
    TiffEncoder::new(&mut bytes)
        .unwrap()
        .write_image::<colortype::Gray32Float>(width, height, &samples)
        .unwrap();
    let gray = io::decode_gray(
        bytes.get_ref(),
        Path::new("float.tif"),
        &ReadLimits::default(),
    )
    .unwrap();
    let expected: Vec<u8> = samples
        .iter()
        .map(|&v| io::sample_float_to_8(f64::from(v)))
        .collect();
    assert_eq!(gray.dimensions(), (width, height));
    assert_eq!(gray.as_raw(), &expected);
    assert_eq!(expected[0], 0);
    assert_eq!(expected[10], 51); // 0.2 · 255 = 51
    assert_eq!(expected[34], 255);

    let wide: Vec<f64> = samples.iter().map(|&v| f64::from(v)).collect();
    let mut bytes = Cursor::new(Vec::new());
    TiffEncoder::new(&mut bytes)
        .unwrap()
        .write_image::<colortype::Gray64Float>(width, height, &wide)
        .unwrap();
    let gray64 = io::decode_gray(
        bytes.get_ref(),
        Path::new("f64.tif"),
        &ReadLimits::default(),
    )
    .unwrap();
    assert_eq!(gray64, gray);

    // Cut short, it is truncated like any other file.
    let whole = bytes.into_inner();
    let error = io::decode_gray(
        &whole[..whole.len() / 2],
        Path::new("f64.tif"),
        &ReadLimits::default(),
    )
    .unwrap_err();
    assert!(
        matches!(error, Error::Truncated { .. } | Error::Corrupt { .. }),
        "{error:?}"
    );
}

// ---- The command line on the same files ----

struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn listing(&self) -> Vec<String> {
        common::listing(self.dir.path())
    }

    /// `gpuconv ARGS` in the scratch folder; with `max_address_space`, under that `prlimit`,
    /// so that a run needing more memory fails (it would abort) instead of passing.
    fn gpuconv(&self, args: &[&str], max_address_space: Option<u64>) -> std::process::Output {
        let binary = assert_cmd::cargo::cargo_bin("gpuconv");
        let mut command = match max_address_space {
            Some(bytes) => {
                let mut command = Command::new("prlimit");
                command.arg(format!("--as={bytes}")).arg("--").arg(binary);
                command
            }
            None => Command::new(binary),
        };
        command
            .args(args)
            .current_dir(self.dir.path())
            .env("XDG_RUNTIME_DIR", self.dir.path())
            .output()
            .unwrap()
    }
}

/// Exit status 1, one line naming `name` and containing `expected`, no file added or changed.
fn assert_refused(scratch: &Scratch, output: &std::process::Output, name: &str, expected: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{name}: {stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.contains("XDG_RUNTIME_DIR"))
        .collect();
    assert_eq!(lines.len(), 1, "{name}: {stderr}");
    assert!(lines[0].starts_with("gpuconv: error: "), "{stderr}");
    assert!(lines[0].contains(name), "{stderr}");
    assert!(
        lines[0].contains(expected),
        "{name}: expected '{expected}' in {stderr}"
    );
    assert!(
        !scratch.path("out.png").exists(),
        "{name}: an output was written"
    );
    assert!(
        scratch.listing().iter().all(|n| !n.ends_with(".part")),
        "{name}: a partial file was left"
    );
}

#[test]
fn the_cli_refuses_every_bomb_in_one_line_within_256_mib() {
    let scratch = Scratch::new();
    for (name, bytes) in bombs() {
        std::fs::write(scratch.path(name), &bytes).unwrap();
        let expected = match name {
            "bomb.gif" | "bomb.bmp" => "refused as implausible",
            _ => "truncated",
        };
        // With the default budget, whatever the machine: no bomb gets as far as the budget.
        let args = ["filter", name, "--edge", "-o", "out.png"];
        for backend in ["cpu", "gpu"] {
            let mut args = args.to_vec();
            args.extend(["--backend", backend]);
            // The CPU run under a 256 MiB address space: a decoder that reached for the header's
            // gigabytes would abort instead of answering.
            let limit = (backend == "cpu").then_some(256 << 20);
            let output = scratch.gpuconv(&args, limit);
            assert_refused(&scratch, &output, name, expected);
        }
    }
    // A genuine image over the budget (a BMP, read whole) is refused naming the flag.
    DynamicImage::ImageRgb8(image::RgbImage::from_pixel(
        300,
        200,
        image::Rgb([9, 99, 199]),
    ))
    .save(scratch.path("photo.bmp"))
    .unwrap();
    let args = [
        "filter",
        "photo.bmp",
        "--edge",
        "-o",
        "out.png",
        "--max-memory",
        "100K",
    ];
    let output = scratch.gpuconv(&args, None);
    assert_refused(
        &scratch,
        &output,
        "photo.bmp",
        "more than the memory budget of 100.0 KiB (raise it with --max-memory",
    );
    let output = scratch.gpuconv(
        &["bench", "--sizes", "100000x100000", "--backend", "cpu"],
        Some(256 << 20),
    );
    assert_refused(
        &scratch,
        &output,
        "100000x100000",
        "more than the memory budget",
    );
}

#[test]
fn the_cli_names_truncated_files_in_every_format() {
    let scratch = Scratch::new();
    for (extension, bytes) in every_format() {
        let name = format!("cut.{extension}");
        std::fs::write(scratch.path(&name), &bytes[..bytes.len() * 6 / 10]).unwrap();
        let output = scratch.gpuconv(
            &[
                "filter",
                &name,
                "--edge",
                "-o",
                "out.png",
                "--backend",
                "cpu",
            ],
            None,
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        let expected = if stderr.contains("truncated") {
            "truncated"
        } else {
            "corrupt"
        };
        assert_refused(&scratch, &output, &name, expected);
    }
}

// ---- Outputs: batches, other paths to an input, signals, bitmaps, folders ----

fn write_png(scratch: &Scratch, name: &str, image: &image::GrayImage) {
    image.save(scratch.path(name)).unwrap();
}

fn stderr_lines(output: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|l| !l.contains("XDG_RUNTIME_DIR"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_batch_writes_every_good_input_and_names_every_bad_one() {
    let scratch = Scratch::new();
    let good = [random_image(31, 17, 255, 21), random_image(9, 40, 255, 22)];
    write_png(&scratch, "a.png", &good[0]);
    write_png(&scratch, "d.png", &good[1]);
    std::fs::write(scratch.path("b.png"), b"not an image").unwrap();
    write_png(&scratch, "e.png", &random_image(2, 9, 255, 23));
    for backend in ["cpu", "gpu"] {
        let args = [
            "filter",
            "a.png",
            "b.png",
            "c.png",
            "d.png",
            "e.png",
            "--edge",
            "-o",
            backend,
            "--backend",
            backend,
        ];
        let output = scratch.gpuconv(&args, None);
        let lines = stderr_lines(&output);
        assert_eq!(output.status.code(), Some(1), "{lines:?}");
        // In input order: each bad input on its line, then the summary.
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert!(
            lines[0].starts_with("gpuconv: error: ") && lines[0].contains("'b.png'"),
            "{lines:?}"
        );
        assert!(
            lines[1].contains("'c.png'") && lines[1].contains("No such file"),
            "{lines:?}"
        );
        assert!(
            lines[2].contains("e.png") && lines[2].contains("smaller than the 3×3"),
            "{lines:?}"
        );
        assert_eq!(lines[3], "gpuconv: 2 written, 3 failed (of 5 inputs)");
        let folder = scratch.path(backend);
        let mut written: Vec<String> = std::fs::read_dir(&folder)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        written.sort();
        assert_eq!(written, ["a-edge.png", "d-edge.png"]);
        for (name, input) in ["a-edge.png", "d-edge.png"].iter().zip(&good) {
            let expected = gpuconv::reference::edge(
                &gpuconv::reference::convolve(input, &gpuconv::Kernel::vertical_lines()),
                &gpuconv::reference::convolve(input, &gpuconv::Kernel::horizontal_lines()),
            );
            assert_eq!(
                io::load_gray(&folder.join(name)).unwrap(),
                expected,
                "{backend} {name}"
            );
        }
    }
}

#[test]
fn an_input_reached_by_another_path_is_never_overwritten() {
    let scratch = Scratch::new();
    write_png(&scratch, "photo.png", &random_image(20, 20, 255, 31));
    let original = std::fs::read(scratch.path("photo.png")).unwrap();
    // A hard link has its own path but the same device and inode, like a bind mount.
    std::fs::hard_link(scratch.path("photo.png"), scratch.path("link.png")).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(scratch.dir.path(), scratch.path("same")).unwrap();
    for output in ["link.png", "same/photo.png", "same/link.png", "./photo.png"] {
        let result = scratch.gpuconv(
            &[
                "filter",
                "photo.png",
                "-k",
                "vertical",
                "-o",
                output,
                "--backend",
                "cpu",
            ],
            None,
        );
        let lines = stderr_lines(&result);
        assert_eq!(result.status.code(), Some(1), "{output}: {lines:?}");
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].contains("refusing to overwrite input"),
            "{lines:?}"
        );
        assert!(lines[0].contains(output), "{lines:?}");
    }
    // Several inputs into a folder holding one of them under another name.
    let result = scratch.gpuconv(
        &[
            "filter",
            "photo.png",
            "link.png",
            "-k",
            "x=vertical",
            "-o",
            "same/",
            "--backend",
            "cpu",
        ],
        None,
    );
    assert_eq!(result.status.code(), Some(0), "{:?}", stderr_lines(&result));
    assert_eq!(std::fs::read(scratch.path("photo.png")).unwrap(), original);
    assert_eq!(std::fs::read(scratch.path("link.png")).unwrap(), original);
}

#[cfg(unix)]
#[test]
fn a_signal_while_writing_leaves_no_partial_file_and_ends_as_the_signal_would() {
    use std::os::unix::process::ExitStatusExt;
    let scratch = Scratch::new();
    // Eight 3-megapixel PNG outputs of noise: writing them takes a while.
    write_png(&scratch, "big.png", &random_image(2000, 1500, 255, 41));
    let kernels = [
        "vertical",
        "horizontal",
        "x",
        "identity",
        "sharpen",
        "laplacian",
        "box-blur",
        "gaussian-blur",
    ];
    // The last case runs with SIGHUP ignored, as under nohup: it must stay ignored.
    for (signal, name, ignored) in [
        (2, "INT", false),
        (15, "TERM", false),
        (1, "HUP", false),
        (1, "HUP", true),
    ] {
        let folder_name = format!("out-{name}-{ignored}");
        let folder = scratch.path(&folder_name);
        let mut command = format!(
            "exec '{}' filter big.png",
            assert_cmd::cargo::cargo_bin("gpuconv").display()
        );
        for kernel in kernels {
            command.push_str(&format!(" -k {kernel}"));
        }
        command.push_str(&format!(" -o {folder_name}/ --backend cpu"));
        if ignored {
            command = format!("trap '' HUP; {command}");
        }
        let mut sh = Command::new("sh");
        sh.args(["-c", &command])
            .current_dir(scratch.dir.path())
            .stderr(std::process::Stdio::null());
        // The signals' default actions, whatever this test inherited: a shell starts background
        // jobs with SIGINT ignored, and gpuconv rightly keeps a signal ignored at start-up.
        // SAFETY: between fork and exec, only async-signal-safe calls (signal) are made.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut sh, || {
                for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                    libc::signal(signal, libc::SIG_DFL);
                }
                Ok(())
            });
        }
        let mut child = sh.spawn().unwrap();
        let names = |folder: &Path| -> Vec<String> {
            std::fs::read_dir(folder)
                .map(|entries| {
                    entries
                        .filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default()
        };
        let partial = |folder: &Path| names(folder).iter().any(|n| n.ends_with(".part"));
        let finished = |folder: &Path| names(folder).iter().filter(|n| n.ends_with(".png")).count();
        // Signalled while a file is being written and at least one more is still to come, so
        // the run cannot end on its own in between.
        let start = std::time::Instant::now();
        while !(partial(&folder) && finished(&folder) < kernels.len() - 1) {
            assert!(
                child.try_wait().unwrap().is_none(),
                "SIG{name}: finished before writing was seen"
            );
            assert!(
                start.elapsed().as_secs() < 60,
                "SIG{name}: no partial file seen"
            );
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        let killed = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(killed.success());
        let status = child.wait().unwrap();
        if ignored {
            assert!(status.success(), "ignored SIG{name}: {status:?}");
            assert_eq!(finished(&folder), kernels.len());
        } else {
            assert_eq!(status.signal(), Some(signal), "SIG{name}: {status:?}");
        }
        assert!(!partial(&folder), "SIG{name}: a partial file was left");
        // Finished outputs stay, each complete.
        for entry in std::fs::read_dir(&folder).into_iter().flatten() {
            let path = entry.unwrap().path();
            assert_eq!(
                io::load_gray(&path).unwrap().dimensions(),
                (1998, 1498),
                "{}",
                path.display()
            );
        }
    }
}

#[test]
fn pbm_outputs_are_real_bitmaps_and_gray_images_are_not_written_as_them() {
    let scratch = Scratch::new();
    let input = random_image(23, 19, 255, 51);
    write_png(&scratch, "in.png", &input);
    let output = scratch.gpuconv(
        &[
            "filter",
            "in.png",
            "--threshold",
            "255",
            "-o",
            "t.pbm",
            "--backend",
            "cpu",
        ],
        None,
    );
    assert!(output.status.success(), "{:?}", stderr_lines(&output));
    let bytes = std::fs::read(scratch.path("t.pbm")).unwrap();
    assert_eq!(&bytes[..2], b"P4");
    let vertical = gpuconv::reference::convolve(&input, &gpuconv::Kernel::vertical_lines());
    let horizontal = gpuconv::reference::convolve(&input, &gpuconv::Kernel::horizontal_lines());
    assert_eq!(
        io::load_gray(&scratch.path("t.pbm")).unwrap(),
        gpuconv::reference::threshold(&vertical, &horizontal, 255)
    );
    for args in [
        vec!["filter", "in.png", "-k", "vertical", "-o", "v.pbm"],
        vec!["filter", "in.png", "--edge", "-o", "e.pbm"],
        vec![
            "filter",
            "in.png",
            "--threshold",
            "9",
            "--responses",
            "-o",
            "dir/",
            "--format",
            "pbm",
        ],
    ] {
        // A usage error: clap's text and exit status 2.
        let output = scratch.gpuconv(&args, None);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("only black and white"), "{stderr}");
    }
    assert_eq!(scratch.listing(), ["in.png", "t.pbm"]);
}

#[test]
fn a_failed_run_removes_the_folders_it_created_and_keeps_the_users() {
    let scratch = Scratch::new();
    std::fs::write(scratch.path("bad.png"), b"not an image").unwrap();
    write_png(&scratch, "small.png", &random_image(2, 2, 255, 61));
    std::fs::create_dir(scratch.path("mine")).unwrap();
    for folder in ["new/deeper/", "mine/new/", "mine/"] {
        let output = scratch.gpuconv(
            &[
                "filter",
                "bad.png",
                "small.png",
                "-k",
                "vertical",
                "-o",
                folder,
            ],
            None,
        );
        assert_eq!(output.status.code(), Some(1), "{folder}");
    }
    assert!(!scratch.path("new").exists());
    assert!(!scratch.path("mine/new").exists());
    assert!(scratch.path("mine").is_dir());
}

#[test]
fn numbers_with_a_minus_sign_work_as_typed_or_get_their_options_range_error() {
    let scratch = Scratch::new();
    let input = random_image(15, 12, 255, 71);
    write_png(&scratch, "in.png", &input);
    let kernel = gpuconv::Kernel::parse("-1,0,1;-2,0,2;-1,0,1", "k").unwrap();
    let expected = gpuconv::reference::convolve(&input, &kernel);
    for args in [
        ["-k", "-1,0,1;-2,0,2;-1,0,1"],
        ["--kernel", "-1,0,1;-2,0,2;-1,0,1"],
        ["--kernel=-1,0,1;-2,0,2;-1,0,1", "--backend=cpu"],
    ] {
        let mut all = vec!["filter", "in.png", "-o", "k.png"];
        all.extend(args);
        let output = scratch.gpuconv(&all, None);
        assert!(
            output.status.success(),
            "{args:?}: {:?}",
            stderr_lines(&output)
        );
        assert_eq!(
            io::load_gray(&scratch.path("k.png")).unwrap(),
            expected,
            "{args:?}"
        );
    }
    // Usage errors are clap's: its text and exit status 2, naming the option and its range.
    for (args, expected) in [
        (
            vec!["filter", "in.png", "--threshold", "-1", "-o", "t.png"],
            "-1 is not in 0..=510",
        ),
        (
            vec![
                "filter",
                "in.png",
                "--edge",
                "--max-pixels",
                "-1",
                "-o",
                "t.png",
            ],
            "-1 is not in 1..=",
        ),
        (
            vec![
                "filter",
                "in.png",
                "--edge",
                "--max-memory",
                "-1",
                "-o",
                "t.png",
            ],
            "cannot be negative",
        ),
        (
            vec![
                "filter",
                "in.png",
                "--edge",
                "--max-memory",
                "lots",
                "-o",
                "t.png",
            ],
            "unknown unit",
        ),
        (vec!["bench", "--repeat", "0"], "0 is not in 1.."),
        (vec!["bench", "--repeat", "-3"], "-3 is not in 1.."),
        (
            vec![
                "filter",
                "in.png",
                "--edge",
                "--no-such-flag",
                "-o",
                "t.png",
            ],
            "unexpected argument",
        ),
    ] {
        let output = scratch.gpuconv(&args, None);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{args:?}: expected '{expected}' in {stderr}"
        );
    }
    assert!(!scratch.path("t.png").exists());
}

#[test]
fn messages_name_the_file_and_the_real_problem() {
    let scratch = Scratch::new();
    write_png(&scratch, "in.png", &random_image(15, 12, 255, 81));
    #[cfg(unix)]
    std::os::unix::fs::symlink("loop.png", scratch.path("loop.png")).unwrap();
    std::fs::create_dir(scratch.path("folder.png")).unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["filter", "loop.png", "--edge", "-o", "out.png"],
            "symbolic links",
        ),
        (
            vec!["filter", "folder.png", "--edge", "-o", "out.png"],
            "not a regular file",
        ),
        (
            vec!["filter", "in.png", "--edge", "-o", "sub/.."],
            "names a folder, not a file",
        ),
        (
            vec!["filter", "in.png", "--edge", "-o", "missing/out.png"],
            "'missing' does not exist",
        ),
        (
            vec!["filter", "in.png", "--edge", "-o", "/dev/null"],
            "not a regular file",
        ),
    ];
    for (args, expected) in cases {
        let output = scratch.gpuconv(&args, None);
        let lines = stderr_lines(&output);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].contains(args[1]) || lines[0].contains(args[4]),
            "{lines:?}"
        );
        assert!(
            lines[0].contains(expected),
            "{args:?}: expected '{expected}' in {lines:?}"
        );
    }
}

#[test]
fn an_empty_adapter_name_counts_as_unset_and_the_fallback_notice_is_short() {
    let scratch = Scratch::new();
    write_png(&scratch, "in.png", &random_image(15, 12, 255, 91));
    let binary = assert_cmd::cargo::cargo_bin("gpuconv");
    for env in [("WGPU_ADAPTER_NAME", ""), ("WGPU_BACKEND", "dx12")] {
        let output = Command::new(&binary)
            .args(["filter", "in.png", "--edge", "-o", "e.png"])
            .current_dir(scratch.dir.path())
            .env("XDG_RUNTIME_DIR", scratch.dir.path())
            .env(env.0, env.1)
            // Past auto's estimate (which alone picks the CPU for so small an image), to the
            // adapter search.
            .env("GPUCONV_AUTO_MIN_MPX", "0")
            .output()
            .unwrap();
        let lines = stderr_lines(&output);
        assert!(output.status.success(), "{env:?}: {lines:?}");
        // CI has only the software renderer; machines without Vulkan have none. Either way the
        // CPU is used, said in one short line with what to do, not wgpu's list of backends. (A
        // machine with a hardware GPU uses it silently when the name is empty.)
        if lines.is_empty() && env.1.is_empty() {
            continue;
        }
        assert_eq!(lines.len(), 1, "{env:?}: {lines:?}");
        assert!(lines[0].ends_with("; using the CPU backend"), "{lines:?}");
        assert!(lines[0].len() < 160, "{lines:?}");
        assert!(!lines[0].contains("not compiled in"), "{lines:?}");
        if env.1 == "dx12" {
            assert!(lines[0].contains("mesa-vulkan-drivers"), "{lines:?}");
        }
    }
}

// ---- The fuzzers' seeds and the inputs that once crashed them ----

fn files_in(folder: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// The limits the `decode` fuzz target uses.
fn fuzz_limits() -> ReadLimits {
    ReadLimits {
        max_pixels: 1 << 22,
        max_memory: 256 << 20,
        output_images: 1,
        encoded_images: 0,
        // The fuzz target turns half its inputs upright; the replays here read them as stored.
        orient: false,
    }
}

#[test]
fn every_fuzz_seed_decodes_and_every_regression_is_answered_without_a_panic() {
    let seeds = files_in("fuzz/seeds/decode");
    assert!(
        seeds.len() >= 20,
        "fuzz/seeds/decode holds {} files",
        seeds.len()
    );
    for seed in &seeds {
        let bytes = std::fs::read(seed).unwrap();
        let gray = io::decode_gray(&bytes, seed, &fuzz_limits())
            .unwrap_or_else(|e| panic!("seed {}: {e}", seed.display()));
        assert!(gray.width() > 0 && gray.height() > 0, "{}", seed.display());
    }
    let regressions = files_in("fuzz/regressions/decode");
    for regression in &regressions {
        let bytes = std::fs::read(regression).unwrap();
        // Either answer is fine; a panic or an abort fails the test binary.
        let _ = io::decode_gray(&bytes, regression, &fuzz_limits());
    }
    // Through the CLI: one line, exit 1, no panic text, even where a decoder panics inside.
    let scratch = Scratch::new();
    for regression in regressions {
        let name = regression
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        std::fs::copy(&regression, scratch.path(&name)).unwrap();
        let output = scratch.gpuconv(
            &[
                "filter",
                &name,
                "--edge",
                "-o",
                "out.png",
                "--backend",
                "cpu",
            ],
            None,
        );
        let lines = stderr_lines(&output);
        if output.status.success() {
            continue;
        }
        assert_eq!(output.status.code(), Some(1), "{name}: {lines:?}");
        assert_eq!(lines.len(), 1, "{name}: {lines:?}");
        assert!(!lines[0].contains("panicked"), "{name}: {lines:?}");
    }
    for regression in files_in("fuzz/regressions/kernel_parse") {
        let text = String::from_utf8_lossy(&std::fs::read(&regression).unwrap()).into_owned();
        let _ = gpuconv::Kernel::parse(&text, "fuzz");
    }
}

/// The case that first showed the path comparison failing: the input reached through a bind
/// mount, in a mount namespace of its own (`unshare`), so nothing outside the test sees it.
#[cfg(target_os = "linux")]
#[test]
fn an_input_reached_through_a_bind_mount_is_never_overwritten() {
    let scratch = Scratch::new();
    std::fs::create_dir(scratch.path("photos")).unwrap();
    std::fs::create_dir(scratch.path("mirror")).unwrap();
    random_image(20, 20, 255, 33)
        .save(scratch.path("photos/photo.png"))
        .unwrap();
    let original = std::fs::read(scratch.path("photos/photo.png")).unwrap();
    let binary = assert_cmd::cargo::cargo_bin("gpuconv");
    let script = format!(
        "mount --bind photos mirror || exit 99; exec '{}' filter photos/photo.png -k vertical -o mirror/photo.png --backend cpu",
        binary.display()
    );
    let output = Command::new("unshare")
        .args(["--mount", "--map-root-user", "sh", "-c", &script])
        .current_dir(scratch.dir.path())
        .output()
        .unwrap();
    let lines = stderr_lines(&output);
    if output.status.code() == Some(99) || lines.iter().any(|l| l.starts_with("unshare:")) {
        // Namespaces are a kernel setting; CI's machines allow them, so there it must run.
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "no mount namespace under CI=true: {lines:?}"
        );
        eprintln!("warning: bind-mount test skipped, no mount namespace here: {lines:?}");
        return;
    }
    assert_eq!(output.status.code(), Some(1), "{lines:?}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("refusing to overwrite input 'mirror/photo.png'"),
        "{lines:?}"
    );
    assert_eq!(
        std::fs::read(scratch.path("photos/photo.png")).unwrap(),
        original
    );
}

#[test]
fn the_default_budget_is_half_of_what_the_process_may_use() {
    let scratch = Scratch::new();
    // `ulimit -v 2 GiB`: the budget `gpuconv info` reports is half of it. (WGPU_BACKEND=dx12
    // keeps Vulkan drivers, which reserve much address space, from loading.)
    let output = Command::new("prlimit")
        .arg("--as=2147483648")
        .arg("--")
        .arg(assert_cmd::cargo::cargo_bin("gpuconv"))
        .arg("info")
        .env("WGPU_BACKEND", "dx12")
        .current_dir(scratch.dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains("memory budget per input: 1.0 GiB"),
        "{stdout}"
    );
}

// ---- Nothing from an input reaches the terminal raw ----

#[test]
fn control_bytes_from_names_and_headers_are_escaped_in_messages() {
    let scratch = Scratch::new();
    // A name that would retitle the terminal, ring it, and forge a line of its own.
    let name = "evil\x1b]0;owned\x07\r\ngpuconv: all good.png";
    std::fs::write(scratch.path(name), b"not an image at all").unwrap();
    let output = scratch.gpuconv(&["filter", name, "--edge", "-o", "out.png"], None);
    assert_eq!(output.status.code(), Some(1));
    let stderr = &output.stderr;
    assert!(
        !stderr.iter().any(|&b| b == 0x1b || b == 0x07 || b == b'\r'),
        "{stderr:?}"
    );
    let text = String::from_utf8_lossy(stderr);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.contains("evil\\x1b]0;owned\\x07\\x0d\\x0agpuconv: all good.png"),
        "{text}"
    );

    // clap's own usage errors quote the argument escaped too.
    let output = scratch.gpuconv(&[name], None);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        !output
            .stderr
            .iter()
            .any(|&b| b == 0x1b || b == 0x07 || b == b'\r'),
        "{:?}",
        String::from_utf8_lossy(&output.stderr)
    );

    // A Y4M header's colour space, and a FRAME line, come back escaped.
    let engine = &mut gpuconv::Engine::from(gpuconv::CpuBackend::new());
    let op = gpuconv::Operation::responses(vec![gpuconv::Kernel::vertical_lines()]).unwrap();
    let mut frames = |input: &[u8]| {
        gpuconv::pipeline::frames::filter_frames(
            engine,
            std::io::Cursor::new(input.to_vec()),
            Vec::new(),
            &op,
            &Default::default(),
        )
    };
    let error = frames(b"YUV4MPEG2 W4 H4 C\x1b[2Jmono\n")
        .unwrap_err()
        .to_string();
    assert!(error.contains("colour space \\x1b[2Jmono"), "{error}");
    let error = frames(b"YUV4MPEG2 W4 H4 Cmono\nFRAMX\x07\n")
        .unwrap_err()
        .to_string();
    assert!(error.contains("'FRAMX\\x07'"), "{error}");
    // A header ending in CRLF is the same header, not colour space "mono\r".
    let mut crlf = b"YUV4MPEG2 W4 H4 Cmono\r\nFRAME\n".to_vec();
    crlf.extend_from_slice(&[7; 16]);
    let summary = frames(&crlf).unwrap();
    assert_eq!((summary.frames, summary.size), (1, (4, 4)));
}

// ---- Files the user names are read within bounds ----

#[test]
fn endless_lists_are_refused_and_names_that_are_not_utf8_are_read() {
    let scratch = Scratch::new();
    let started = std::time::Instant::now();
    let output = scratch.gpuconv(
        &["filter", "--from-list", "/dev/zero", "--edge", "-o", "out/"],
        Some(256 << 20),
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("longer than"), "{stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20));

    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        // Latin-1 'é' (0xe9), not UTF-8, in a list with CRLF lines and a blank one.
        let latin1 = std::ffi::OsStr::from_bytes(b"caf\xe9.png");
        write_png(&scratch, "plain.png", &common::random_image(9, 7, 255, 1));
        image::GrayImage::from_fn(11, 5, |x, y| image::Luma([(x * 20 + y) as u8]))
            .save_with_format(scratch.dir.path().join(latin1), image::ImageFormat::Png)
            .unwrap();
        std::fs::write(scratch.path("list.txt"), b"plain.png\r\n\r\ncaf\xe9.png\n").unwrap();
        let output = scratch.gpuconv(
            &[
                "filter",
                "--from-list",
                "list.txt",
                "--edge",
                "-o",
                "out/",
                "-q",
            ],
            None,
        );
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let written = scratch
            .dir
            .path()
            .join("out")
            .join(std::ffi::OsStr::from_bytes(b"caf\xe9-edge.png"));
        assert_eq!(
            gpuconv::io::load_gray(&written).unwrap().dimensions(),
            (9, 3)
        );
        assert!(scratch.path("out/plain-edge.png").exists());
    }
}

#[test]
fn tga_on_standard_input_is_read_by_its_header_or_by_input_format() {
    let image = common::random_image(13, 11, 255, 4);
    let mut tga = Vec::new();
    DynamicImage::ImageLuma8(image.clone())
        .write_to(&mut std::io::Cursor::new(&mut tga), ImageFormat::Tga)
        .unwrap();
    let want = common::reference_image(
        &image,
        &gpuconv::Operation::edge(
            gpuconv::Kernel::vertical_lines(),
            gpuconv::Kernel::horizontal_lines(),
        ),
    );
    for extra in [&[][..], &["--input-format", "tga"][..]] {
        let output = assert_cmd::Command::cargo_bin("gpuconv")
            .unwrap()
            .args(["filter", "-", "--edge", "-o", "-", "--format", "pgm"])
            .args(extra)
            .write_stdin(tga.clone())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{extra:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let got = image::load_from_memory(&output.stdout).unwrap().to_luma8();
        common::assert_same(&got, &want, "TGA from standard input");
    }
    let output = assert_cmd::Command::cargo_bin("gpuconv")
        .unwrap()
        .args(["filter", "-", "--edge", "-o", "-", "--input-format", "avif"])
        .write_stdin(tga)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a format gpuconv reads"));
}
