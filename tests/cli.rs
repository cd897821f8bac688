//! The built `gpuconv` binary on real files: outputs decoded and compared with the reference,
//! and every kind of bad input answered with one line, a non-zero exit and no file left behind.

mod common;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use common::{assert_same, random_image};
use gpuconv::{Kernel, io, reference};
use image::GrayImage;

/// A scratch folder, with Mesa's runtime-dir warning silenced so stderr holds only gpuconv's words.
struct Scratch {
    dir: tempfile::TempDir,
    runtime: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            runtime: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write_image(&self, name: &str, image: &GrayImage) -> PathBuf {
        let path = self.path(name);
        image.save(&path).unwrap();
        path
    }

    fn gpuconv(&self) -> Command {
        let mut command = Command::cargo_bin("gpuconv").unwrap();
        command
            .current_dir(self.dir.path())
            .env("XDG_RUNTIME_DIR", self.runtime.path());
        command
    }

    /// The file names in the folder, sorted.
    fn listing(&self) -> Vec<String> {
        common::listing(self.dir.path())
    }
}

fn load(path: &Path) -> GrayImage {
    io::load_gray(path).unwrap()
}

#[test]
fn one_kernel_writes_one_file_equal_to_the_reference() {
    let scratch = Scratch::new();
    let image = random_image(131, 77, 255, 1);
    scratch.write_image("in.png", &image);
    for backend in ["cpu", "gpu", "auto"] {
        if backend == "gpu" && common::gpu().is_none() {
            continue;
        }
        let out = format!("out-{backend}.png");
        scratch
            .gpuconv()
            .args([
                "filter",
                "in.png",
                "-k",
                "vertical",
                "-o",
                &out,
                "--backend",
                backend,
            ])
            .assert()
            .success();
        assert_same(
            &load(&scratch.path(&out)),
            &reference::convolve(&image, &Kernel::vertical_lines()),
            backend,
        );
    }
}

#[test]
fn edge_defaults_to_the_lessons_two_filters_and_threshold_binarises() {
    let scratch = Scratch::new();
    let image = random_image(64, 49, 40, 2);
    scratch.write_image("in.png", &image);
    let v = reference::convolve(&image, &Kernel::vertical_lines());
    let h = reference::convolve(&image, &Kernel::horizontal_lines());

    scratch
        .gpuconv()
        .args(["filter", "in.png", "--edge", "-o", "edge.pgm"])
        .assert()
        .success();
    assert!(
        std::fs::read(scratch.path("edge.pgm"))
            .unwrap()
            .starts_with(b"P5"),
        "binary PGM"
    );
    assert_same(
        &load(&scratch.path("edge.pgm")),
        &reference::edge(&v, &h),
        "edge",
    );

    scratch
        .gpuconv()
        .args(["filter", "in.png", "--threshold", "100", "-o", "bin.bmp"])
        .assert()
        .success();
    assert_same(
        &load(&scratch.path("bin.bmp")),
        &reference::threshold(&v, &h, 100),
        "threshold",
    );
}

#[test]
fn several_kernels_and_inputs_fill_a_folder_named_after_them() {
    let scratch = Scratch::new();
    let first = random_image(33, 35, 255, 3);
    let second = random_image(20, 9, 255, 4);
    scratch.write_image("first.png", &first);
    scratch.write_image("second.pgm", &second);
    scratch
        .gpuconv()
        .args([
            "filter",
            "first.png",
            "second.pgm",
            "-k",
            "x",
            "-k",
            "1,2,3;4,5,6;7,8,-9",
            "-k",
            "blur=gaussian-blur",
            "-o",
            "out",
        ])
        .assert()
        .success();
    let custom = Kernel::parse("1,2,3;4,5,6;7,8,-9", "kernel2").unwrap();
    for (stem, image) in [("first", &first), ("second", &second)] {
        for (name, kernel) in [
            ("x", Kernel::named("x").unwrap()),
            ("kernel2", custom.clone()),
            ("blur", Kernel::named("gaussian-blur").unwrap()),
        ] {
            let path = scratch.path(&format!("out/{stem}-{name}.png"));
            assert_same(
                &load(&path),
                &reference::convolve(image, &kernel),
                &format!("{stem}-{name}"),
            );
        }
    }
    // A trailing slash asks for a folder even for one output.
    scratch
        .gpuconv()
        .args(["filter", "second.pgm", "-k", "x", "-o", "single/"])
        .assert()
        .success();
    assert_same(
        &load(&scratch.path("single/second-x.png")),
        &reference::convolve(&second, &Kernel::named("x").unwrap()),
        "into folder",
    );
    // --responses with --edge: the edge image and both responses.
    scratch
        .gpuconv()
        .args([
            "filter",
            "first.png",
            "--edge",
            "--responses",
            "-o",
            "both",
            "--format",
            "pgm",
        ])
        .assert()
        .success();
    let mut names: Vec<String> = std::fs::read_dir(scratch.path("both"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "first-edge.pgm",
            "first-horizontal.pgm",
            "first-vertical.pgm"
        ]
    );
}

#[test]
fn colour_input_becomes_gray_by_the_lessons_luma_rule() {
    let scratch = Scratch::new();
    let colour = image::RgbImage::from_fn(41, 23, |x, y| {
        image::Rgb([(x * 6) as u8, (y * 11) as u8, ((x * y) % 256) as u8])
    });
    colour.save(scratch.path("colour.png")).unwrap();
    scratch
        .gpuconv()
        .args(["filter", "colour.png", "-k", "identity", "-o", "gray.png"])
        .assert()
        .success();
    let gray = GrayImage::from_fn(41, 23, |x, y| {
        image::Luma([io::luma(colour.get_pixel(x, y).0)])
    });
    assert_same(
        &load(&scratch.path("gray.png")),
        &reference::convolve(&gray, &Kernel::named("identity").unwrap()),
        "luma",
    );
}

/// QOI in, TIFF and PGM out: the streaming path, end to end, against the reference; and the
/// same file cut short leaves no output at all.
#[test]
fn a_qoi_streams_into_tiff_and_pgm_and_a_cut_one_leaves_nothing() {
    let scratch = Scratch::new();
    let colour = image::RgbaImage::from_fn(301, 77, |x, y| {
        image::Rgba([
            (x * 3) as u8,
            (y * 7 + x / 9) as u8,
            ((x ^ y) % 256) as u8,
            200,
        ])
    });
    colour.save(scratch.path("in.qoi")).unwrap();
    scratch
        .gpuconv()
        .args(["filter", "in.qoi", "--edge", "--responses", "-o", "out/"])
        .args(["--format", "tif", "--backend", "cpu"])
        .assert()
        .success();
    scratch
        .gpuconv()
        .args(["filter", "in.qoi", "-k", "vertical", "-o", "v.pgm"])
        .assert()
        .success();
    let gray = GrayImage::from_fn(301, 77, |x, y| {
        image::Luma([io::luma([
            colour.get_pixel(x, y)[0],
            colour.get_pixel(x, y)[1],
            colour.get_pixel(x, y)[2],
        ])])
    });
    let vertical = reference::convolve(&gray, &Kernel::vertical_lines());
    let horizontal = reference::convolve(&gray, &Kernel::horizontal_lines());
    let edge = GrayImage::from_fn(299, 75, |x, y| {
        image::Luma([vertical.get_pixel(x, y)[0].saturating_add(horizontal.get_pixel(x, y)[0])])
    });
    let written = common::listing(&scratch.path("out"));
    assert_eq!(written.len(), 3, "{written:?}");
    for name in written {
        let expected = if name.contains("edge") {
            &edge
        } else if name.contains("vertical") {
            &vertical
        } else {
            &horizontal
        };
        assert_same(&load(&scratch.path("out").join(&name)), expected, &name);
    }
    assert_same(&load(&scratch.path("v.pgm")), &vertical, "v.pgm");

    let bytes = std::fs::read(scratch.path("in.qoi")).unwrap();
    std::fs::write(scratch.path("cut.qoi"), &bytes[..bytes.len() * 9 / 10]).unwrap();
    assert_fails_cleanly(
        &scratch,
        &[
            "filter",
            "cut.qoi",
            "--edge",
            "-o",
            "cut.tif",
            "--backend",
            "cpu",
        ],
        &[],
        "cut.qoi",
    );
}

#[test]
fn timings_are_printed_per_stage() {
    let scratch = Scratch::new();
    scratch.write_image("in.png", &random_image(50, 50, 255, 5));
    let timings = |backend: &str| {
        let args = [
            "filter",
            "in.png",
            "--edge",
            "-o",
            "e.png",
            "--timings",
            "--backend",
            backend,
        ];
        let output = scratch.gpuconv().args(args).output().unwrap();
        assert!(output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let stderr = timings("cpu");
    for stage in ["decode", "compute", "encode", "filter total", "cpu ("] {
        assert!(stderr.contains(stage), "no {stage} in {stderr}");
    }
    if cfg!(target_os = "linux") {
        let peak = stderr
            .lines()
            .find_map(|l| l.strip_prefix("peak resident memory: "))
            .and_then(|l| l.strip_suffix(" MiB"))
            .unwrap_or_else(|| panic!("no peak memory in {stderr}"));
        let peak: f64 = peak.parse().unwrap();
        assert!(peak > 1.0 && peak < 4096.0, "{peak} MiB for a 50×50 image");
    }
    let Some(gpu) = common::gpu() else { return };
    let stderr = timings("gpu");
    for stage in ["decode", "upload", "compute", "readback", "encode", "gpu ("] {
        assert!(stderr.contains(stage), "no {stage} in {stderr}");
    }
    if gpu
        .device()
        .features()
        .contains(wgpu::Features::TIMESTAMP_QUERY)
    {
        assert!(stderr.contains("gpu kernel"), "no kernel time in {stderr}");
    }
}

/// Runs gpuconv expecting failure: exit code 1, exactly one line on stderr mentioning `expected`,
/// no panic, and the folder exactly as it was (no output, no temporary file, inputs unchanged).
fn assert_fails_cleanly(scratch: &Scratch, args: &[&str], env: &[(&str, &str)], expected: &str) {
    let before = scratch.listing();
    let contents_before: Vec<Vec<u8>> = before
        .iter()
        .map(|n| std::fs::read(scratch.path(n)).unwrap_or_default())
        .collect();
    let mut command = scratch.gpuconv();
    command.args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{args:?}: exit code; stderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: expected one line, got: {stderr}");
    assert!(
        lines[0].starts_with("gpuconv: error: "),
        "{args:?}: {stderr}"
    );
    assert!(
        lines[0].contains(expected),
        "{args:?}: expected '{expected}' in: {stderr}"
    );
    assert_eq!(
        scratch.listing(),
        before,
        "{args:?}: files were left behind or removed"
    );
    let contents_after: Vec<Vec<u8>> = before
        .iter()
        .map(|n| std::fs::read(scratch.path(n)).unwrap_or_default())
        .collect();
    assert!(
        contents_after == contents_before,
        "{args:?}: an input file changed"
    );
}

#[test]
fn bad_inputs_give_one_line_a_failure_code_and_no_file() {
    let scratch = Scratch::new();
    let good = random_image(20, 20, 255, 6);
    scratch.write_image("good.png", &good);
    let png = std::fs::read(scratch.path("good.png")).unwrap();
    std::fs::write(scratch.path("truncated.png"), &png[..png.len() / 2]).unwrap();
    std::fs::write(
        scratch.path("corrupt.png"),
        b"this is not an image at all, just text",
    )
    .unwrap();
    scratch.write_image("tiny.png", &random_image(2, 5, 255, 7));
    std::fs::write(scratch.path("a-file"), b"x").unwrap();
    std::fs::write(scratch.path("notes.md"), b"# not an image\n").unwrap();

    // Passes every check up front and fails only when the file is renamed into place, after the
    // filtering: the temporary file must still be cleaned up.
    let too_long_name = format!("{}.png", "x".repeat(300));
    let cpu = ["--backend", "cpu"];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["filter", "missing.png", "-k", "vertical", "-o", "out.png"],
            "missing.png",
        ),
        (
            vec!["filter", "corrupt.png", "-k", "vertical", "-o", "out.png"],
            "corrupt.png",
        ),
        (
            vec!["filter", "truncated.png", "-k", "vertical", "-o", "out.png"],
            "truncated.png",
        ),
        (
            vec!["filter", "tiny.png", "-k", "vertical", "-o", "out.png"],
            "smaller than the 3×3 kernel",
        ),
        (
            vec!["filter", "good.png", "-k", "1,0,-1;2,0,-2", "-o", "out.png"],
            "expected 3 rows",
        ),
        (
            vec![
                "filter",
                "good.png",
                "-k",
                "1,0,-1;2,0;1,0,-1",
                "-o",
                "out.png",
            ],
            "row 2 has 2 weights",
        ),
        (
            vec![
                "filter",
                "good.png",
                "-k",
                "1,0,-1;2,zero,-2;1,0,-1",
                "-o",
                "out.png",
            ],
            "'zero' (row 2, column 2) is not a number",
        ),
        (
            vec![
                "filter",
                "good.png",
                "-k",
                "1,0,-1;2,NaN,-2;1,0,-1",
                "-o",
                "out.png",
            ],
            "not a finite number",
        ),
        (
            vec![
                "filter",
                "good.png",
                "-k",
                "1,0,-1;2,inf,-2;1,0,-1",
                "-o",
                "out.png",
            ],
            "not a finite number",
        ),
        (
            vec!["filter", "good.png", "-k", "sobel", "-o", "out.png"],
            "not a known kernel name",
        ),
        (
            vec![
                "filter",
                "good.png",
                "-k",
                "vertical",
                "-o",
                "no-such-dir/out.png",
            ],
            "no-such-dir/out.png",
        ),
        (
            vec![
                "filter",
                "good.png",
                "-k",
                "vertical",
                "-o",
                "a-file/out.png",
            ],
            "a-file/out.png",
        ),
        (
            vec!["filter", "good.png", "-k", "vertical", "-o", &too_long_name],
            "File name too long",
        ),
        (
            vec![
                "filter",
                "good.png",
                "-k",
                "vertical",
                "-o",
                "out.png",
                "--max-pixels",
                "399",
            ],
            "20×20 is 400 pixels, more than the limit of 399",
        ),
        (
            vec!["filter", "notes.md", "-k", "vertical", "-o", "out.png"],
            "'notes.md': not a PNG, JPEG",
        ),
        (
            vec![
                "filter",
                "good.png",
                "truncated.png",
                "--edge",
                "-o",
                "two.png",
            ],
            "looks like a file name",
        ),
        (
            vec![
                "filter", "good.png", "-k", "vertical", "-o", "out.png", "--format", "jpg",
            ],
            "--format jpg applies to outputs written into a folder",
        ),
        (
            vec!["filter", "good.png", "-k", "vertical", "-o", "out.xyz"],
            "unsupported image format",
        ),
        (
            vec!["filter", "good.png", "-k", "vertical", "-o", "good.png"],
            "refusing to overwrite input",
        ),
        (
            vec!["filter", "good.png", "-k", "vertical", "-o", "./good.png"],
            "refusing to overwrite input",
        ),
        (
            vec![
                "filter", "good.png", "-k", "vertical", "-k", "x", "-o", "a-file",
            ],
            "must name a folder",
        ),
        (
            vec![
                "filter",
                "good.png",
                "-k",
                "vertical",
                "-k",
                "horizontal",
                "-k",
                "x",
                "--edge",
                "-o",
                "out.png",
            ],
            "exactly 2 kernels",
        ),
    ];
    // Mistakes in the arguments themselves are usage errors: clap's text, exit status 2.
    let usage = [
        "expected 3 rows",
        "row 2 has 2 weights",
        "is not a number",
        "not a finite number",
        "not a known kernel name",
        "looks like a file name",
        "applies to outputs written into a folder",
        "unsupported image format",
        "must name a folder",
        "exactly 2 kernels",
    ];
    for (mut args, expected) in cases {
        args.extend(cpu);
        if usage.iter().any(|u| expected.contains(u)) {
            assert_usage_error(&scratch, &args, expected);
        } else {
            assert_fails_cleanly(&scratch, &args, &[], expected);
        }
    }
}

/// Exit status 2 with clap's usage text and `expected`, and no file added, removed or changed.
fn assert_usage_error(scratch: &Scratch, args: &[&str], expected: &str) {
    let before: Vec<(String, Vec<u8>)> = scratch
        .listing()
        .into_iter()
        .map(|n| {
            let bytes = std::fs::read(scratch.path(&n)).unwrap_or_default();
            (n, bytes)
        })
        .collect();
    let output = scratch.gpuconv().args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
    assert!(
        stderr.contains(expected),
        "{args:?}: expected '{expected}' in {stderr}"
    );
    assert!(stderr.contains("Usage: gpuconv "), "{args:?}: {stderr}");
    let after: Vec<(String, Vec<u8>)> = scratch
        .listing()
        .into_iter()
        .map(|n| {
            let bytes = std::fs::read(scratch.path(&n)).unwrap_or_default();
            (n, bytes)
        })
        .collect();
    assert!(after == before, "{args:?}: files changed");
}

#[test]
fn auto_weighs_the_job_before_looking_for_a_gpu_and_says_why_it_chose_the_cpu() {
    let scratch = Scratch::new();
    let image = random_image(41, 23, 255, 12);
    scratch.write_image("in.png", &image);
    let expected = reference::convolve(&image, &Kernel::vertical_lines());
    let run = |env: &[(&str, &str)]| {
        let mut command = scratch.gpuconv();
        command.args(["filter", "in.png", "-k", "vertical", "-o", "out.png"]);
        for (key, value) in env {
            command.env(key, value);
        }
        let output = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        (output.status.code(), stderr)
    };
    // One small image: opening any GPU costs more than it could save, whatever the machine
    // has; the estimate is given, and what overrides it.
    let (code, stderr) = run(&[]);
    assert_eq!(code, Some(0), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains("one 943-px image in host memory, 1 kernel:"),
        "{stderr}"
    );
    assert!(lines[0].contains("estimated at"), "{stderr}");
    assert!(lines[0].contains("--backend gpu"), "{stderr}");
    assert!(lines[0].ends_with("; using the CPU backend"), "{stderr}");
    assert_same(
        &load(&scratch.path("out.png")),
        &expected,
        "auto on the CPU",
    );
    // A threshold replaces the estimate.
    let (code, stderr) = run(&[("GPUCONV_AUTO_MIN_MPX", "5")]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("below the threshold of 5 Mpx in GPUCONV_AUTO_MIN_MPX"),
        "{stderr}"
    );
    // An unreadable one is an error naming it, and nothing is written.
    std::fs::remove_file(scratch.path("out.png")).unwrap();
    assert_fails_cleanly(
        &scratch,
        &["filter", "in.png", "-k", "vertical", "-o", "out.png"],
        &[("GPUCONV_AUTO_MIN_MPX", "lots")],
        "GPUCONV_AUTO_MIN_MPX='lots' is not a number",
    );
}

#[test]
fn a_gpu_run_saves_its_pipeline_cache_and_the_next_one_starts_from_it() {
    if common::gpu().is_none() {
        return;
    }
    let scratch = Scratch::new();
    let image = random_image(37, 29, 255, 21);
    scratch.write_image("in.png", &image);
    let cache = scratch.path("cache");
    let expected = reference::convolve(&image, &Kernel::vertical_lines());
    for run in 0..2 {
        let output = scratch
            .gpuconv()
            .args([
                "filter",
                "in.png",
                "-k",
                "vertical",
                "-o",
                "out.png",
                "--backend",
                "gpu",
            ])
            .env("XDG_CACHE_HOME", &cache)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        assert_same(
            &load(&scratch.path("out.png")),
            &expected,
            &format!("run {run}"),
        );
        let saved: Vec<_> = std::fs::read_dir(cache.join("gpuconv")).unwrap().collect();
        assert_eq!(saved.len(), 1, "one cache file for the one adapter");
        let saved = saved[0].as_ref().unwrap();
        assert!(
            saved
                .file_name()
                .to_string_lossy()
                .starts_with("wgpu_pipeline_cache_")
        );
        assert!(saved.metadata().unwrap().len() > 0);
    }
}

#[test]
fn backend_gpu_without_an_adapter_says_so_and_how_to_get_one() {
    let scratch = Scratch::new();
    scratch.write_image("good.png", &random_image(20, 20, 255, 8));
    // No Linux machine has a DirectX 12 adapter: this hides every GPU from wgpu.
    let no_gpu = [("WGPU_BACKEND", "dx12")];
    let args = [
        "filter",
        "good.png",
        "-k",
        "vertical",
        "-o",
        "out.png",
        "--backend",
        "gpu",
    ];
    assert_fails_cleanly(&scratch, &args, &no_gpu, "no GPU adapter found");
    assert_fails_cleanly(&scratch, &args, &no_gpu, "mesa-vulkan-drivers");
    assert_fails_cleanly(
        &scratch,
        &args,
        &[("WGPU_ADAPTER_NAME", "no-such-gpu")],
        "WGPU_ADAPTER_NAME='no-such-gpu'",
    );

    // A bad input is reported alone: the fallback notice comes only once an image is decoded.
    std::fs::write(scratch.path("corrupt.png"), b"not a png").unwrap();
    let corrupt = ["filter", "corrupt.png", "-k", "vertical", "-o", "out.png"];
    assert_fails_cleanly(&scratch, &corrupt, &no_gpu, "corrupt.png");
    std::fs::remove_file(scratch.path("corrupt.png")).unwrap();

    // auto falls back to the CPU with a one-line notice, and the result is still right.
    let output = scratch
        .gpuconv()
        .args(["filter", "good.png", "-k", "vertical", "-o", "out.png"])
        .envs(no_gpu)
        .output()
        .unwrap();
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("using the CPU backend"), "{stderr}");
    let input = load(&scratch.path("good.png"));
    assert_same(
        &load(&scratch.path("out.png")),
        &reference::convolve(&input, &Kernel::vertical_lines()),
        "fallback",
    );
}

#[test]
fn demo_prints_the_lessons_answer_and_writes_figures() {
    let scratch = Scratch::new();
    let output = scratch
        .gpuconv()
        .args(["demo", "-o", "figs", "--backend", "cpu"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("[  4   3   4]\n  [  2   4   3]\n  [  2   3   4]"),
        "{stdout}"
    );
    for name in [
        "arrows",
        "camera",
        "coffee",
        "stripe-vertical",
        "stripe-horizontal",
    ] {
        let figure = load(&scratch.path(&format!("figs/{name}-figure.png")));
        assert!(
            figure.width() > figure.height() * 3,
            "{name}: panels side by side"
        );
    }
    // The Keras model's |V| + |H|, unclipped: 4 × 255 on the stripes' edges, where the clipped
    // responses show 255.
    assert!(
        stdout.contains(
            "stripe-vertical: the Keras model, |V| + |H| unclipped (5×5):\n  [1020 1020    0 1020 1020]"
        ),
        "{stdout}"
    );
    // Six panels of the camera's 510×510 outputs and itself, each about as wide as tall: the
    // sixth is the Keras model's, scaled to its maximum.
    let camera = load(&scratch.path("figs/camera-figure.png"));
    assert!(
        camera.width() > camera.height() * 5,
        "six panels: {}×{}",
        camera.width(),
        camera.height()
    );
}

#[test]
fn info_says_which_backend_each_choice_uses() {
    let scratch = Scratch::new();
    let output = scratch.gpuconv().arg("info").output().unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("--backend cpu:  the CPU backend"),
        "{stdout}"
    );
    if let Some(gpu) = common::gpu() {
        let name = &gpu.adapter_info().name;
        assert!(
            stdout.contains(&format!("--backend gpu:  {name}")),
            "{stdout}"
        );
        if gpu.adapter_info().device_type == wgpu::DeviceType::Cpu {
            assert!(
                stdout.contains("--backend auto: the CPU backend"),
                "{stdout}"
            );
        }
    }
    let output = scratch
        .gpuconv()
        .arg("info")
        .env("WGPU_BACKEND", "dx12")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("--backend gpu:  fails: no GPU adapter found"),
        "{stdout}"
    );
    assert!(
        stdout.contains("--backend auto: the CPU backend"),
        "{stdout}"
    );
}

#[test]
fn bench_times_each_stage_and_checks_the_backends_agree() {
    let scratch = Scratch::new();
    let args = [
        "bench",
        "--sizes",
        "33x17,64x9",
        "--ops",
        "vertical,edge",
        "--repeat",
        "1",
        "--json",
        "bench.json",
    ];
    let backend = if common::gpu().is_some() {
        "both"
    } else {
        "cpu"
    };
    let output = scratch
        .gpuconv()
        .args(args)
        .args(["--backend", backend])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rows: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(scratch.path("bench.json")).unwrap()).unwrap();
    let backends = if backend == "both" { 2 } else { 1 };
    let (host, resident): (Vec<_>, Vec<_>) = rows.iter().partition(|row| row["path"] == "host");
    assert_eq!(host.len(), 2 * 2 * backends, "sizes × ops × backends");
    for row in &host {
        assert_eq!(row["check"], "ok", "{row}");
        assert!(row["compute_ms"].as_f64().unwrap() > 0.0, "{row}");
        assert!(row["mpx_per_s"].as_f64().unwrap() > 0.0, "{row}");
        assert!(row["total_ms"].as_f64().unwrap() > 0.0, "{row}");
        assert!(row["copy_gb_per_s"].as_f64().unwrap() > 0.0, "{row}");
    }
    // On the GPU, each size and operation also runs over buffers and textures already on the
    // device, read back and checked: buffer→buffer, RGBA and sRGB textures in, storage
    // textures out.
    let paths = if backend == "both" { 5 } else { 0 };
    assert_eq!(
        resident.len(),
        2 * 2 * paths,
        "sizes × ops × resident paths"
    );
    for row in &resident {
        assert_eq!(row["check"], "ok", "{row}");
    }
    // Lavapipe's timestamps can be equal around a tiny pass, which gives no time; those that
    // gave one give its ratio to the CPU too.
    let timed: Vec<_> = resident
        .iter()
        .filter(|row| row["kernel_ms"].is_number())
        .collect();
    assert!(timed.len() >= resident.len() / 2, "{resident:?}");
    for row in timed {
        assert!(row["kernel_ms"].as_f64().unwrap() > 0.0, "{row}");
        assert!(row["vs_cpu"].as_f64().unwrap() > 0.0, "{row}");
    }
}

#[test]
fn bench_startup_times_fresh_processes_per_backend() {
    let scratch = Scratch::new();
    let backend = if common::gpu().is_some() {
        "both"
    } else {
        "cpu"
    };
    let output = scratch
        .gpuconv()
        .args([
            "bench",
            "--startup",
            "--repeat",
            "2",
            "--json",
            "startup.json",
        ])
        .args(["--backend", backend])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let records: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(scratch.path("startup.json")).unwrap()).unwrap();
    let expected: &[&str] = if backend == "both" {
        &["cpu", "auto", "gpu"]
    } else {
        &["cpu"]
    };
    let startups: Vec<&serde_json::Value> =
        records.iter().filter(|r| r["op"] == "startup").collect();
    assert_eq!(startups.len(), expected.len(), "{stdout}");
    for (record, name) in startups.iter().zip(expected) {
        assert_eq!(record["backend"], *name, "{record}");
        assert!(record["error"].is_null(), "{record}");
        assert!(record["startup_ms"].as_f64().unwrap() > 0.0, "{record}");
    }
    if backend == "both" {
        let inside = records.iter().find(|r| r["op"] == "startup-in-process");
        let inside = inside.expect("the GPU's start-up, step by step");
        assert!(
            inside["device_and_pipeline_ms"].as_f64().unwrap() > 0.0,
            "{inside}"
        );
    }
}

#[test]
fn standard_input_and_output_carry_one_image_and_nothing_else() {
    let scratch = Scratch::new();
    let image = random_image(57, 33, 255, 41);
    let png = common::png(&image);
    let edge = {
        let v = reference::convolve(&image, &Kernel::vertical_lines());
        let h = reference::convolve(&image, &Kernel::horizontal_lines());
        GrayImage::from_fn(55, 31, |x, y| {
            image::Luma([v.get_pixel(x, y)[0].saturating_add(h.get_pixel(x, y)[0])])
        })
    };
    for (format, expected_format) in [
        (None, image::ImageFormat::Png),
        (Some("pgm"), image::ImageFormat::Pnm),
        (Some("tif"), image::ImageFormat::Tiff),
    ] {
        let mut command = scratch.gpuconv();
        command.args(["filter", "-", "--edge", "-o", "-", "--backend", "cpu"]);
        if let Some(format) = format {
            command.args(["--format", format]);
        }
        let output = command.write_stdin(png.clone()).output().unwrap();
        assert!(
            output.status.success(),
            "{format:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let written = image::load_from_memory_with_format(&output.stdout, expected_format)
            .unwrap_or_else(|e| panic!("{format:?}: stdout is not the image alone: {e}"))
            .to_luma8();
        assert_same(&written, &edge, &format!("stdout as {format:?}"));
    }
    // Standard input into a file, and a file onto standard output.
    scratch
        .gpuconv()
        .args([
            "filter",
            "-",
            "--edge",
            "-o",
            "from-stdin.png",
            "--backend",
            "cpu",
        ])
        .write_stdin(png.clone())
        .assert()
        .success();
    assert_same(&load(&scratch.path("from-stdin.png")), &edge, "from stdin");
    // Empty or broken input: one line, exit 1, nothing on standard output.
    for (bytes, expected) in [
        (Vec::new(), "empty"),
        (png[..png.len() / 2].to_vec(), "truncated"),
    ] {
        let output = scratch
            .gpuconv()
            .args(["filter", "-", "--edge", "-o", "-", "--backend", "cpu"])
            .write_stdin(bytes)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1));
        assert!(output.stdout.is_empty());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(expected) && stderr.contains("standard input"),
            "{stderr}"
        );
    }
}

#[test]
fn orient_turns_a_tiff_upright_by_its_orientation_tag_and_the_default_keeps_it_as_stored() {
    let scratch = Scratch::new();
    let stored = common::random_image(37, 21, 255, 41);
    // Orientation 6: the stored image must be turned 90° clockwise to be upright.
    std::fs::write(
        scratch.path("turned.tif"),
        common::oriented_tiff(&stored, 6),
    )
    .unwrap();
    let operation = gpuconv::Operation::edge(Kernel::vertical_lines(), Kernel::horizontal_lines());
    for (orient, upright) in [
        (false, stored.clone()),
        (true, image::imageops::rotate90(&stored)),
    ] {
        let name = format!("edge-{orient}.png");
        let mut command = scratch.gpuconv();
        command.args([
            "filter",
            "turned.tif",
            "--edge",
            "-o",
            &name,
            "--backend",
            "cpu",
        ]);
        if orient {
            command.arg("--orient");
        }
        command.assert().success();
        let want = common::reference_image(&upright, &operation);
        assert_same(
            &load(&scratch.path(&name)),
            &want,
            &format!("orient {orient}"),
        );
    }
}

#[test]
fn every_compression_writes_the_same_pixels_and_small_is_smallest() {
    let scratch = Scratch::new();
    // A photo-like image: smooth shading, edges and noise, odd sizes; large enough for several
    // bands, so that bands compressed on different cores are joined.
    let image = GrayImage::from_fn(1201, 977, |x, y| {
        let noise = (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503)) >> 29;
        image::Luma([
            ((x / 3 + y / 5 + if (x / 97 + y / 89) % 2 == 0 { 60 } else { 0 } + noise) % 256) as u8,
        ])
    });
    scratch.write_image("photo.png", &image);
    let edge = common::reference_image(
        &image,
        &gpuconv::Operation::edge(Kernel::vertical_lines(), Kernel::horizontal_lines()),
    );
    let mut sizes = Vec::new();
    for compression in ["fast", "default", "small"] {
        let name = format!("edge-{compression}.png");
        scratch
            .gpuconv()
            .args([
                "filter",
                "photo.png",
                "--edge",
                "-o",
                &name,
                "--backend",
                "cpu",
            ])
            .args(["--compression", compression])
            .assert()
            .success();
        assert_same(&load(&scratch.path(&name)), &edge, compression);
        sizes.push(std::fs::metadata(scratch.path(&name)).unwrap().len());
    }
    assert!(sizes[2] < sizes[1] && sizes[2] < sizes[0], "{sizes:?}");
    let output = scratch
        .gpuconv()
        .args(["filter", "photo.png", "--edge", "-o", "x.png"])
        .args(["--compression", "best"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "invalid value 'best' for '--compression <HOW>': the choices are fast, default, small"
        ),
        "{stderr}"
    );
    assert!(!scratch.path("x.png").exists());
}

#[test]
fn a_large_image_goes_to_standard_output_as_it_is_encoded() {
    // 4.4 megapixels: streamed. Within a 6 MiB budget whole it would not fit (its pixels, its
    // output and its encoding held at once); streamed to the pipe, it does.
    let scratch = Scratch::new();
    let image = random_image(2101, 2099, 255, 43);
    let png = common::png(&image);
    let edge = common::reference_image(
        &image,
        &gpuconv::Operation::edge(Kernel::vertical_lines(), Kernel::horizontal_lines()),
    );
    for format in ["pgm", "png"] {
        let output = scratch
            .gpuconv()
            .args(["filter", "-", "--edge", "-o", "-", "--backend", "cpu"])
            .args(["--format", format, "--max-memory", "6M"])
            .write_stdin(png.clone())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{format}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let written = image::load_from_memory(&output.stdout).unwrap().to_luma8();
        assert_same(&written, &edge, format);
    }
    // A reader that goes away after a few bytes ends the run quietly, and not as a success.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gpuconv"))
        .current_dir(scratch.dir.path())
        .env("XDG_RUNTIME_DIR", scratch.runtime.path())
        .args(["filter", "-", "--edge", "-o", "-", "--backend", "cpu"])
        .args(["--format", "pgm"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::{Read, Write};
        child.stdin.take().unwrap().write_all(&png).unwrap();
        let mut first = [0; 100];
        child.stdout.take().unwrap().read_exact(&mut first).unwrap();
        assert!(first.starts_with(b"P5\n2099 2097\n255\n"));
    }
    let output = child.wait_with_output().unwrap();
    assert!(!output.status.success());
    assert!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn standard_streams_are_refused_where_they_cannot_work() {
    let scratch = Scratch::new();
    scratch.write_image("a.png", &random_image(9, 9, 255, 1));
    assert_usage_error(
        &scratch,
        &[
            "filter",
            "a.png",
            "-k",
            "vertical",
            "-k",
            "horizontal",
            "-o",
            "-",
        ],
        "writes 2",
    );
    assert_usage_error(
        &scratch,
        &["filter", "-", "-", "--edge", "-o", "out/"],
        "only once",
    );
    assert_usage_error(
        &scratch,
        &["filter", "-", "--from-list", "-", "--edge", "-o", "out/"],
        "both the list",
    );
    assert_usage_error(
        &scratch,
        &[
            "filter", "a.png", "--edge", "-o", "-", "--format", "jpeg2000",
        ],
        "jpeg2000",
    );
}

#[test]
fn from_list_reads_paths_a_line_at_a_time_from_a_file_or_standard_input() {
    let scratch = Scratch::new();
    let images = [random_image(11, 7, 255, 2), random_image(8, 13, 255, 3)];
    scratch.write_image("one.png", &images[0]);
    std::fs::create_dir(scratch.path("sub")).unwrap();
    scratch.write_image("sub/two.png", &images[1]);
    // Blank lines and CRLF endings are fine; the list may add to inputs on the command line.
    std::fs::write(scratch.path("list.txt"), "sub/two.png\r\n\n").unwrap();
    scratch
        .gpuconv()
        .args([
            "filter",
            "one.png",
            "--from-list",
            "list.txt",
            "-k",
            "vertical",
        ])
        .args(["-o", "out/", "--backend", "cpu"])
        .assert()
        .success();
    for (name, image) in ["one-vertical.png", "two-vertical.png"].iter().zip(&images) {
        assert_same(
            &load(&scratch.path("out").join(name)),
            &reference::convolve(image, &Kernel::vertical_lines()),
            name,
        );
    }
    // From standard input, as `find ... | gpuconv filter --from-list -` gives it, with a
    // missing file in the middle: the others are written, the missing one named, exit 1.
    let output = scratch
        .gpuconv()
        .args([
            "filter",
            "--from-list",
            "-",
            "--edge",
            "-o",
            "edges/",
            "--backend",
            "cpu",
        ])
        .write_stdin("one.png\nmissing.png\nsub/two.png\n")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("missing.png") && stderr.contains("2 written, 1 failed"),
        "{stderr}"
    );
    assert_eq!(
        common::listing(&scratch.path("edges")),
        ["one-edge.png", "two-edge.png"]
    );
    // A list that names nothing is a usage error.
    std::fs::write(scratch.path("empty.txt"), "\n\n").unwrap();
    assert_usage_error(
        &scratch,
        &["filter", "--from-list", "empty.txt", "--edge", "-o", "x/"],
        "names no input",
    );
}

#[test]
fn a_list_is_filtered_as_it_is_read() {
    use std::io::Write;
    let scratch = Scratch::new();
    let images = [random_image(12, 9, 255, 4), random_image(9, 12, 255, 5)];
    scratch.write_image("first.png", &images[0]);
    std::fs::create_dir(scratch.path("b")).unwrap();
    scratch.write_image("second.png", &images[1]);
    scratch.write_image("b/first.png", &images[1]);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gpuconv"))
        .current_dir(scratch.dir.path())
        .env("XDG_RUNTIME_DIR", scratch.runtime.path())
        .args(["filter", "--from-list", "-", "-k", "vertical", "-o", "out/"])
        .args(["--backend", "cpu"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut list = child.stdin.take().unwrap();
    // The first path, and nothing more yet: its output appears while the list is still open.
    list.write_all(b"first.png\n").unwrap();
    list.flush().unwrap();
    let written = scratch.path("out/first-vertical.png");
    let started = std::time::Instant::now();
    while !written.exists() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "nothing written before the list ended"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // A later path whose output an earlier one took fails alone; the rest go on.
    list.write_all(b"b/first.png\nsecond.png\n").unwrap();
    drop(list);
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("two outputs would both be written to 'out/first-vertical.png'")
            && stderr.contains("2 written, 1 failed (of 3 inputs)"),
        "{stderr}"
    );
    for (name, image) in [
        ("first-vertical.png", &images[0]),
        ("second-vertical.png", &images[1]),
    ] {
        assert_same(
            &load(&scratch.path("out").join(name)),
            &reference::convolve(image, &Kernel::vertical_lines()),
            name,
        );
    }
}

/// Runs `command` under `script`, which gives it a terminal, and returns what it wrote there.
fn on_a_terminal(scratch: &Scratch, command: &str) -> String {
    let output = std::process::Command::new("script")
        .args(["-qec", command, "/dev/null"])
        .current_dir(scratch.path(""))
        .env("XDG_RUNTIME_DIR", scratch.runtime.path())
        .output()
        .expect("script (util-linux) runs");
    assert!(output.status.success(), "{command}: {output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn a_progress_bar_shows_on_a_terminal_only_and_not_with_quiet() {
    let scratch = Scratch::new();
    for i in 0..4 {
        scratch.write_image(&format!("in{i}.png"), &random_image(40, 30, 255, 60 + i));
    }
    let bin = assert_cmd::cargo::cargo_bin("gpuconv");
    let run = |extra: &str, out: &str| {
        format!(
            "{} filter in0.png in1.png in2.png in3.png --edge -o {out}/ --backend cpu {extra}",
            bin.display()
        )
    };
    let terminal = on_a_terminal(&scratch, &run("", "a"));
    assert!(terminal.contains("3/4 files"), "{terminal:?}");
    let quiet = on_a_terminal(&scratch, &run("--quiet", "b"));
    assert!(!quiet.contains("files"), "{quiet:?}");
    // Piped, as in scripts and logs: stderr holds nothing at all.
    let output = scratch
        .gpuconv()
        .args([
            "filter", "in0.png", "in1.png", "in2.png", "in3.png", "--edge",
        ])
        .args(["-o", "c/", "--backend", "cpu"])
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(
        output.stderr.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(common::listing(&scratch.path("c")).len(), 4);
}

#[test]
fn a_batch_on_every_core_reports_in_input_order_and_defers_what_exceeds_a_workers_share() {
    let scratch = Scratch::new();
    let mut args: Vec<String> = Vec::new();
    let mut expected_errors = Vec::new();
    for i in 0..12u32 {
        let name = format!("in{i:02}.png");
        if i % 3 == 1 {
            // Bad inputs spread through the batch: a missing file and a broken one.
            if i % 2 == 0 {
                std::fs::write(scratch.path(&name), b"\x89PNG\r\n\x1a\nbroken").unwrap();
            }
            expected_errors.push(name.clone());
        } else {
            scratch.write_image(&name, &random_image(20 + i, 15 + i, 255, u64::from(i)));
        }
        args.push(name);
    }
    // A large one, placed first: 1600×1600 needs more than half of a 6 MiB budget (checked
    // below), so each of two workers' share is too small and it is filtered alone after the
    // others, with the whole budget.
    let large = random_image(1600, 1600, 255, 99);
    scratch.write_image("big.png", &large);
    let alone = scratch
        .gpuconv()
        .args(["filter", "big.png", "-k", "vertical", "-o", "big.bmp"])
        .args(["--backend", "cpu", "--max-memory", "3M"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&alone.stderr).contains("more than the memory budget"),
        "{alone:?}"
    );
    args.insert(0, "big.png".to_owned());
    let output = scratch
        .gpuconv()
        .env("RAYON_NUM_THREADS", "2")
        .args(["filter"])
        .args(&args)
        .args([
            "-k",
            "vertical",
            "-o",
            "out/",
            "--backend",
            "cpu",
            "--max-memory",
            "6M",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let named: Vec<String> = stderr
        .lines()
        .filter(|l| l.starts_with("gpuconv: error:"))
        .map(|l| {
            expected_errors
                .iter()
                .find(|name| l.contains(name.as_str()))
                .unwrap_or_else(|| panic!("unexpected error line: {l}"))
                .clone()
        })
        .collect();
    assert_eq!(named, expected_errors, "errors in input order:\n{stderr}");
    assert!(
        stderr.contains("9 written, 4 failed (of 13 inputs)"),
        "{stderr}"
    );
    assert_same(
        &load(&scratch.path("out/big-vertical.png")),
        &reference::convolve(&large, &Kernel::vertical_lines()),
        "the deferred input",
    );
    assert_eq!(common::listing(&scratch.path("out")).len(), 9);
}

#[test]
fn border_gives_a_same_size_output_on_files_and_frames() {
    let scratch = Scratch::new();
    let image = random_image(31, 17, 255, 8);
    scratch.write_image("in.png", &image);
    for (border, value) in [
        ("zero", gpuconv::Border::Zero),
        ("replicate", gpuconv::Border::Replicate),
        ("reflect", gpuconv::Border::Reflect),
    ] {
        let name = format!("{border}.png");
        scratch
            .gpuconv()
            .args([
                "filter", "in.png", "--edge", "--border", border, "-o", &name,
            ])
            .args(["--backend", "cpu"])
            .assert()
            .success();
        let operation =
            gpuconv::Operation::edge(Kernel::vertical_lines(), Kernel::horizontal_lines())
                .with_border(value);
        let expected = reference::run(&image, &operation).combined.unwrap();
        assert_eq!(expected.dimensions(), (31, 17));
        assert_same(&load(&scratch.path(&name)), &expected, border);
    }
    // Frames keep their size too: the Y4M header says so.
    let mut y4m = b"YUV4MPEG2 W31 H17 F25:1 Cmono\nFRAME\n".to_vec();
    y4m.extend_from_slice(image.as_raw());
    let output = scratch
        .gpuconv()
        .args([
            "stream",
            "--edge",
            "--border",
            "replicate",
            "--backend",
            "cpu",
        ])
        .write_stdin(y4m)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(
        output
            .stdout
            .starts_with(b"YUV4MPEG2 W31 H17 F25:1 Cmono\nFRAME\n")
    );
    assert_eq!(output.stdout.len(), 36 + 31 * 17);
    // The bench times bordered operations too, checking each backend against the CPU.
    let bench = scratch
        .gpuconv()
        .args([
            "bench",
            "--backend",
            "cpu",
            "--sizes",
            "20x10",
            "--ops",
            "edge",
        ])
        .args(["--border", "zero", "--repeat", "1"])
        .output()
        .unwrap();
    assert!(bench.status.success(), "{bench:?}");
    assert!(String::from_utf8_lossy(&bench.stdout).contains(" ok"));
    let wrong = scratch
        .gpuconv()
        .args([
            "filter", "in.png", "--edge", "--border", "wrap", "-o", "x.png",
        ])
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("replicate"));
}

#[test]
fn standard_input_in_a_batch_is_read_once_with_the_whole_budget() {
    let scratch = Scratch::new();
    let (a, b) = (random_image(23, 19, 255, 70), random_image(17, 29, 255, 71));
    scratch.write_image("a.png", &a);
    let png = common::png(&b);
    scratch
        .gpuconv()
        .args([
            "filter",
            "-",
            "a.png",
            "-k",
            "vertical",
            "-o",
            "out/",
            "--backend",
            "cpu",
        ])
        .write_stdin(png)
        .assert()
        .success();
    for (name, image) in [("stdin-vertical.png", &b), ("a-vertical.png", &a)] {
        assert_same(
            &load(&scratch.path("out").join(name)),
            &reference::convolve(image, &Kernel::vertical_lines()),
            name,
        );
    }
    // A list read from standard input cannot name standard input.
    let output = scratch
        .gpuconv()
        .args(["filter", "--from-list", "-", "--edge", "-o", "x/"])
        .write_stdin("a.png\n-\n")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("only once"));
}

#[test]
fn one_large_streamed_image_shows_a_bar_of_its_rows_on_a_terminal() {
    let scratch = Scratch::new();
    // An 8194×8194 input makes the 8192×8192 output, the 64 megapixels from which one image
    // gets a bar; a pattern that compresses keeps the file small.
    let image = GrayImage::from_fn(8194, 8194, |x, y| {
        image::Luma([((x / 64) ^ (y / 64)) as u8])
    });
    scratch.write_image("large.png", &image);
    drop(image);
    let bin = assert_cmd::cargo::cargo_bin("gpuconv");
    let terminal = on_a_terminal(
        &scratch,
        &format!(
            "{} filter large.png --edge -o large-edge.png --backend cpu",
            bin.display()
        ),
    );
    assert!(terminal.contains("/8192 rows"), "{terminal:?}");
    assert_eq!(
        image::image_dimensions(scratch.path("large-edge.png")).unwrap(),
        (8192, 8192)
    );
}

#[test]
fn unclipped_writes_the_keras_models_edge_image_in_16_bits() {
    let scratch = Scratch::new();
    let image = random_image(67, 45, 255, 41);
    scratch.write_image("in.png", &image);
    for border in ["valid", "reflect"] {
        let (width, height, expected) = reference::unclipped_edge(
            &image,
            &Kernel::vertical_lines(),
            &Kernel::horizontal_lines(),
            border.parse().unwrap(),
        );
        let expected: Vec<u16> = expected.iter().map(|&e| e as u16).collect();
        assert!(expected.iter().any(|&e| e > 255), "past 8 bits");
        for (out, backend) in [("k.png", "cpu"), ("k.pgm", "gpu"), ("k.tif", "auto")] {
            if backend == "gpu" && common::gpu().is_none() {
                continue;
            }
            scratch
                .gpuconv()
                .args(["filter", "in.png", "--edge", "--unclipped", "-o", out])
                .args(["--border", border, "--backend", backend])
                .assert()
                .success();
            let written = image::open(scratch.path(out)).unwrap();
            let written = written.as_luma16().expect("16-bit gray");
            assert_eq!(written.dimensions(), (width, height), "{out}");
            assert!(written.as_raw() == &expected, "{out} with {border}");
        }
    }
    // Where 16 bits cannot hold it, or the format has no 16-bit gray: one line, no file.
    let cases: [(&[&str], &str); 5] = [
        (
            &["-o", "k.jpg"],
            "a 16-bit image is written as PNG, PGM or TIFF",
        ),
        (
            &[
                "-k",
                "big=300,0,-300;0,0,0;0,0,0",
                "-k",
                "horizontal",
                "-o",
                "k2.png",
            ],
            "can reach 155040, more than a 16-bit image holds (65535)",
        ),
        (
            &["-k", "box-blur", "-k", "horizontal", "-o", "k2.png"],
            "'box-blur' has fractions",
        ),
        (&["-o", "-"], "not standard input or output"),
        (&["in.png", "-o", "k2/"], "give one input, not 2"),
    ];
    for (args, expected) in cases {
        let before = scratch.listing();
        let output = scratch
            .gpuconv()
            .args([
                "filter",
                "in.png",
                "--edge",
                "--unclipped",
                "--backend",
                "cpu",
            ])
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert_eq!(scratch.listing(), before, "{args:?}: no file written");
    }
}
