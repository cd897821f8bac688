//! Video frames: raw and Y4M streams through `gpuconv::frames` on every backend, checked frame
//! by frame against the reference, short and malformed streams, and real ffmpeg piping frames
//! through `gpuconv stream` in both directions.

mod common;

use std::io::Cursor;

use common::{on_every_backend, random_image};
use gpuconv::pipeline::frames::{FrameOptions, filter_frames};
use gpuconv::{Error, Kernel, Operation, reference};
use image::GrayImage;

fn edge() -> Operation {
    Operation::edge(Kernel::vertical_lines(), Kernel::horizontal_lines())
}

/// The reference's one output image of `operation`.
fn expected(image: &GrayImage, operation: &Operation) -> Vec<u8> {
    let output = reference::run(image, operation);
    output
        .combined
        .or_else(|| output.responses.into_iter().next())
        .unwrap()
        .into_raw()
}

fn frames(count: u64, width: u32, height: u32) -> Vec<GrayImage> {
    (0..count)
        .map(|i| random_image(width, height, 255, 100 + i))
        .collect()
}

#[test]
fn raw_and_y4m_frames_come_out_filtered_in_order_on_every_backend() {
    let (width, height) = (37, 23);
    let frames = frames(5, width, height);
    let raw: Vec<u8> = frames.iter().flat_map(|f| f.as_raw().clone()).collect();
    let mut y4m = b"YUV4MPEG2 W37 H23 F25:1 Ip A1:1 Cmono XYSCSS=MONO\n".to_vec();
    for frame in &frames {
        y4m.extend_from_slice(b"FRAME\n");
        y4m.extend_from_slice(frame.as_raw());
    }
    let operations = [
        edge(),
        Operation::responses(vec![Kernel::vertical_lines()]).unwrap(),
        Operation::threshold(Kernel::vertical_lines(), Kernel::horizontal_lines(), 120).unwrap(),
    ];
    on_every_backend(|backend, engine| {
        for operation in &operations {
            let want: Vec<Vec<u8>> = frames.iter().map(|f| expected(f, operation)).collect();
            // Raw: the filtered frames back to back.
            let mut out = Vec::new();
            let options = FrameOptions {
                size: Some((width, height)),
                ..FrameOptions::default()
            };
            let summary =
                filter_frames(engine, Cursor::new(&raw), &mut out, operation, &options).unwrap();
            assert_eq!((summary.frames, summary.y4m), (5, false));
            assert_eq!(out, want.concat(), "{backend}, raw, {operation:?}");
            // Y4M: the header with the output's size and the input's other fields, then frames.
            let mut out = Vec::new();
            let summary = filter_frames(
                engine,
                Cursor::new(&y4m),
                &mut out,
                operation,
                &FrameOptions::default(),
            )
            .unwrap();
            assert_eq!(
                (summary.frames, summary.size, summary.y4m),
                (5, (37, 23), true)
            );
            let mut expected_y4m = b"YUV4MPEG2 W35 H21 F25:1 Ip A1:1 Cmono XYSCSS=MONO\n".to_vec();
            for frame in &want {
                expected_y4m.extend_from_slice(b"FRAME\n");
                expected_y4m.extend_from_slice(frame);
            }
            assert_eq!(out, expected_y4m, "{backend}, y4m, {operation:?}");
        }
    });
}

#[test]
fn a_short_last_frame_is_reported_after_every_complete_frame_or_dropped() {
    let (width, height) = (9, 7);
    let frames = frames(3, width, height);
    let mut raw: Vec<u8> = frames.iter().flat_map(|f| f.as_raw().clone()).collect();
    raw.extend_from_slice(&[1, 2, 3, 4, 5]);
    let want: Vec<u8> = frames.iter().flat_map(|f| expected(f, &edge())).collect();
    on_every_backend(|backend, engine| {
        let mut out = Vec::new();
        let options = FrameOptions {
            size: Some((width, height)),
            ..FrameOptions::default()
        };
        let error =
            filter_frames(engine, Cursor::new(&raw), &mut out, &edge(), &options).unwrap_err();
        assert!(
            matches!(
                error,
                Error::ShortFrame {
                    frames: 3,
                    leftover: 5,
                    frame_bytes: 63
                }
            ),
            "{backend}: {error:?}"
        );
        assert_eq!(out, want, "{backend}: complete frames first");
        let mut out = Vec::new();
        let options = FrameOptions {
            drop_partial: true,
            ..options
        };
        let summary =
            filter_frames(engine, Cursor::new(&raw), &mut out, &edge(), &options).unwrap();
        assert_eq!((summary.frames, summary.dropped_bytes), (3, 5));
        assert_eq!(out, want);
    });
}

#[test]
fn streams_gpuconv_cannot_read_are_errors_that_say_why() {
    let mut engine = gpuconv::Engine::from(gpuconv::CpuBackend::new());
    let run = |engine: &mut gpuconv::Engine, input: &[u8], operation: &Operation, size| {
        let options = FrameOptions {
            size,
            ..FrameOptions::default()
        };
        filter_frames(engine, Cursor::new(input), Vec::new(), operation, &options)
            .map(drop)
            .unwrap_err()
            .to_string()
    };
    let colour = b"YUV4MPEG2 W8 H8 F25:1 C420jpeg\nFRAME\n";
    assert!(run(&mut engine, colour, &edge(), None).contains("-pix_fmt gray"));
    let no_colour = b"YUV4MPEG2 W8 H8 F25:1\nFRAME\n";
    assert!(run(&mut engine, no_colour, &edge(), None).contains("420jpeg"));
    assert!(run(&mut engine, &[7; 64], &edge(), None).contains("need their size"));
    let sizeless = b"YUV4MPEG2 F25:1 Cmono\n";
    assert!(run(&mut engine, sizeless, &edge(), None).contains("gives no size"));
    let mismatch = b"YUV4MPEG2 W8 H8 Cmono\nFRAME\n";
    assert!(run(&mut engine, mismatch, &edge(), Some((9, 9))).contains("not the Y4M header's"));
    let junk = b"YUV4MPEG2 W3 H3 Cmono\nFRAME\n123456789NOTAFRAME\n";
    assert!(run(&mut engine, junk, &edge(), None).contains("FRAME line"));
    // A header claiming huge frames is refused before anything is allocated for them.
    let huge = b"YUV4MPEG2 W70000 H70000 Cmono\nFRAME\n";
    assert!(run(&mut engine, huge, &edge(), None).contains("more than"));
    let two =
        Operation::responses(vec![Kernel::vertical_lines(), Kernel::horizontal_lines()]).unwrap();
    assert!(run(&mut engine, &[7; 64], &two, Some((8, 8))).contains("one image per frame"));
}

/// ffmpeg, or `None` when it is missing outside CI (under `CI=true` it must be there: the test
/// script installs it).
fn ffmpeg() -> Option<std::path::PathBuf> {
    let found = std::process::Command::new("ffmpeg")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some("ffmpeg".into());
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "CI=true but ffmpeg is missing: scripts/test.sh installs it (apt-get install ffmpeg)"
        );
    }
    eprintln!("warning: ffmpeg tests skipped, no ffmpeg");
    None
}

/// Runs a shell pipeline, returning its standard output; panics with its stderr on failure.
fn pipeline(script: &str, dir: &std::path::Path) -> Vec<u8> {
    let output = std::process::Command::new("bash")
        .args(["-o", "pipefail", "-c", script])
        .current_dir(dir)
        .env("XDG_RUNTIME_DIR", dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

#[test]
fn real_ffmpeg_pipes_frames_through_gpuconv_stream_both_ways() {
    let Some(_) = ffmpeg() else { return };
    let dir = tempfile::tempdir().unwrap();
    let bin = assert_cmd::cargo::cargo_bin("gpuconv");
    let bin = bin.display();
    // testsrc2 makes even sizes; 162 output columns still end mid-word on the GPU.
    let (width, height, count) = (164, 98, 6);
    // The source frames, as ffmpeg makes them gray: the reference's input.
    let source = format!(
        "ffmpeg -hide_banner -loglevel error -f lavfi -i testsrc2=size={width}x{height}:rate=25 -frames:v {count}"
    );
    let gray = pipeline(&format!("{source} -f rawvideo -pix_fmt gray -"), dir.path());
    assert_eq!(gray.len(), (width * height * count) as usize);
    let want: Vec<u8> = gray
        .chunks((width * height) as usize)
        .flat_map(|f| {
            expected(
                &GrayImage::from_raw(width, height, f.to_vec()).unwrap(),
                &edge(),
            )
        })
        .collect();
    // Y4M out of ffmpeg, through gpuconv, back into ffmpeg and out as raw frames, on every
    // backend.
    let mut backends = vec!["cpu"];
    if common::gpu().is_some() {
        backends.push("gpu");
    }
    for backend in backends {
        let through_y4m = pipeline(
            &format!(
                "{source} -f yuv4mpegpipe -pix_fmt gray - | {bin} stream --edge --backend {backend} \
                 | ffmpeg -hide_banner -loglevel error -f yuv4mpegpipe -i - -f rawvideo -pix_fmt gray -"
            ),
            dir.path(),
        );
        assert_eq!(through_y4m, want, "Y4M both ways on {backend}");
    }
    // Raw frames in, raw frames out, read back by ffmpeg as rawvideo of the output's size.
    let through_raw = pipeline(
        &format!(
            "{source} -f rawvideo -pix_fmt gray - | {bin} stream --size {width}x{height} --edge --backend cpu \
             | ffmpeg -hide_banner -loglevel error -f rawvideo -pix_fmt gray -s {}x{} -i - -f rawvideo -pix_fmt gray -",
            width - 2,
            height - 2
        ),
        dir.path(),
    );
    assert_eq!(through_raw, want, "raw both ways");
    // Colour Y4M is refused with the ffmpeg option that fixes it, exit 1, nothing written.
    let output = std::process::Command::new("bash")
        .args([
            "-c",
            &format!("{source} -f yuv4mpegpipe - | {bin} stream --edge --backend cpu"),
        ])
        .env("XDG_RUNTIME_DIR", dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("-pix_fmt gray"), "{stderr}");
}

#[test]
fn frames_over_the_memory_budget_and_a_closed_output_are_errors() {
    let bin = assert_cmd::cargo::cargo_bin("gpuconv");
    let frame = vec![9u8; 64 * 48];
    // Three frames and three filtered ones of 1920x1080, and the buffers: over 4 MiB.
    let output = std::process::Command::new(&bin)
        .args(["stream", "--size", "1920x1080", "-k", "vertical"])
        .args(["--backend", "cpu", "--max-memory", "4M"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("frames of 1920×1080 need about")
            && stderr.contains("memory budget of 4.0 MiB")
            && stderr.contains("--max-memory"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
    // The library says the same, before reading a frame.
    let error = filter_frames(
        &mut gpuconv::Engine::from(gpuconv::CpuBackend::new()),
        Cursor::new(frame.clone()),
        Vec::new(),
        &Operation::responses(vec![Kernel::vertical_lines()]).unwrap(),
        &FrameOptions {
            size: Some((64, 48)),
            max_memory: 1 << 10,
            ..FrameOptions::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(error, gpuconv::Error::FramesOverBudget { .. }),
        "{error}"
    );

    // Standard output closed (`>&-`): an error, not frames silently lost and status 0.
    let output = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "head -c {} /dev/zero | '{}' stream --size 64x48 -k vertical --backend cpu >&-",
            frame.len() * 3,
            bin.display()
        ))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("standard output is closed"), "{stderr}");
}
