//! The library's pipeline, as an app embedding gpuconv drives it: one image from a file or
//! bytes to files or bytes, band by band where the formats allow; a batch of files with a
//! worker per core, over-share inputs deferred, outcomes in input order; one shared engine
//! re-opened after its GPU device is lost.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use gpuconv::pipeline::batch::{self, Batch};
use gpuconv::pipeline::{Destination, Settings, SharedEngine, Source, filter_image};
use gpuconv::{BackendChoice, Border, Combine, CpuBackend, Engine, ErrorKind, Kernel, Operation};
use image::GrayImage;

/// A shared CPU engine, and a shared GPU one when there is an adapter (under `CI=true` there
/// must be), each opened by its first image.
fn shared_engines() -> Vec<(&'static str, Arc<SharedEngine>)> {
    let mut engines = vec![(
        "cpu",
        SharedEngine::deferred(|_| Ok(Engine::from(CpuBackend::new()))),
    )];
    if common::gpu().is_some() {
        engines.push((
            "gpu",
            SharedEngine::deferred(|_| Engine::new(BackendChoice::Gpu)),
        ));
    }
    engines
}

fn edge_and_responses() -> Operation {
    Operation::new(
        vec![Kernel::vertical_lines(), Kernel::horizontal_lines()],
        Combine::Edge,
        true,
    )
    .unwrap()
}

fn encoded(image: &GrayImage, extension: &str) -> Vec<u8> {
    gpuconv::io::encode_gray(image, extension).unwrap()
}

#[test]
fn bytes_in_and_bytes_out_equal_the_reference_streamed_or_whole() {
    // Just over STREAM_FROM_PIXELS, odd sizes: PNG and PGM stream both ways, in several bands.
    let large = common::random_image(2049, 2051, 255, 5);
    const { assert!(2049 * 2051 >= gpuconv::pipeline::STREAM_FROM_PIXELS) };
    let small = common::random_image(301, 37, 255, 6);
    let operation = edge_and_responses();
    for (backend, engine) in shared_engines() {
        for (image, input, output, streams) in [
            (&large, "png", "png", true),
            (&large, "pgm", "pgm", true),
            (&large, "png", "bmp", false),
            (&large, "bmp", "png", false),
            (&small, "png", "png", false),
        ] {
            let (width, height) = image.dimensions();
            let what = format!("{backend}: {width}x{height} {input} to {output}");
            let source = Source::Bytes {
                bytes: encoded(image, input).into(),
                name: format!("test.{input}"),
            };
            let filtered = filter_image(
                &engine,
                &source,
                &Destination::Encoded(output.to_owned()),
                &Settings::new(&operation),
            )
            .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(filtered.streamed, streams, "{what}");
            assert_eq!(filtered.input_size, (width, height), "{what}");
            assert_eq!(filtered.output_size, (width - 2, height - 2), "{what}");
            assert_eq!(filtered.backend, backend, "{what}");
            let got: Vec<Vec<u8>> = filtered
                .encoded
                .iter()
                .map(|bytes| {
                    image::load_from_memory(bytes)
                        .unwrap()
                        .into_luma8()
                        .into_raw()
                })
                .collect();
            assert_eq!(got, common::reference_outputs(image, &operation), "{what}");
        }
    }
}

/// 1001×2999: under STREAM_FROM_PIXELS, but too large to hold whole (3 MB in, as much per
/// output) in a budget of a few MiB, where its bands (an eighth of it, six to nine in flight)
/// fit.
fn tall() -> GrayImage {
    common::random_image(1001, 2999, 255, 10)
}

#[test]
fn a_small_image_over_the_budget_whole_streams_within_it_to_its_own_size() {
    let dir = tempfile::tempdir().unwrap();
    let image = tall();
    let input = dir.path().join("in.png");
    image.save(&input).unwrap();
    let operation = Operation::edge(Kernel::vertical_lines(), Kernel::horizontal_lines())
        .with_border(Border::Replicate);
    let expected = common::reference_image(&image, &operation);
    for (backend, engine) in shared_engines() {
        let output = dir.path().join(format!("out-{backend}.tif"));
        let settings = Settings {
            limits: gpuconv::io::ReadLimits {
                max_memory: 4 << 20,
                ..Default::default()
            },
            ..Settings::new(&operation)
        };
        let filtered = filter_image(
            &engine,
            &Source::File(input.clone()),
            &Destination::Files(vec![output.clone()]),
            &settings,
        )
        .unwrap();
        assert!(filtered.streamed, "{backend}");
        assert!(filtered.encoded.is_empty());
        common::assert_same(
            &gpuconv::io::load_gray(&output).unwrap(),
            &expected,
            backend,
        );
    }
}

#[test]
fn a_batch_streams_what_a_share_holds_only_in_bands_defers_the_rest_and_reports_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let input = |name: &str| dir.path().join(name);
    let images = [
        ("a.png", common::random_image(61, 47, 255, 1)),
        ("b.bmp", common::random_image(33, 29, 255, 2)),
        // Too large for a 2.5 MiB share whole, not in bands: streamed in its turn.
        ("tall.png", tall()),
        // Read whole (BMP), 1.5 MB in and out: more than a worker's share of the budget
        // below, so it waits for the others and runs alone with the whole budget.
        ("big.bmp", common::random_image(1501, 999, 255, 3)),
        ("d.pgm", common::random_image(129, 131, 255, 4)),
    ];
    for (name, image) in &images {
        image.save(input(name)).unwrap();
    }
    std::fs::write(input("c.png"), b"\x89PNG\r\n\x1a\n not really").unwrap();
    let names = ["a.png", "b.bmp", "tall.png", "big.bmp", "c.png", "d.pgm"];
    let operation = Operation::edge(Kernel::vertical_lines(), Kernel::horizontal_lines());
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let jobs: Vec<(Source, Destination)> = names
        .iter()
        .map(|name| {
            let stem = Path::new(name).file_stem().unwrap();
            (
                Source::File(input(name)),
                Destination::Files(batch::output_paths(&out, stem, &operation, "png")),
            )
        })
        .collect();
    let plan = Batch {
        workers: 3,
        max_memory: 15 << 19,
    };
    for (backend, engine) in shared_engines() {
        let mut reported: Vec<(PathBuf, Result<bool, ErrorKind>)> = Vec::new();
        batch::filter_all(
            &engine,
            &plan,
            &jobs,
            &Settings::new(&operation),
            |source, outcome| {
                let Source::File(path) = source else {
                    unreachable!()
                };
                reported.push((
                    path.clone(),
                    outcome.map(|f| f.streamed).map_err(|e| e.kind()),
                ));
            },
        )
        .unwrap();
        let order: Vec<String> = reported
            .iter()
            .map(|(path, _)| path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            order,
            ["a.png", "b.bmp", "tall.png", "c.png", "d.pgm", "big.bmp"],
            "{backend}: input order, the deferred one last"
        );
        let outcomes: Vec<_> = reported.into_iter().map(|(_, o)| o).collect();
        assert_eq!(
            outcomes,
            [
                Ok(false),
                Ok(false),
                Ok(true),
                Err(ErrorKind::Input),
                Ok(false),
                Ok(false)
            ],
            "{backend}: small files whole, the tall PNG in bands, the corrupt file its own fault"
        );
        for (name, image) in &images {
            let stem = Path::new(name).file_stem().unwrap().to_string_lossy();
            let written = gpuconv::io::load_gray(&out.join(format!("{stem}-edge.png"))).unwrap();
            common::assert_same(
                &written,
                &common::reference_image(image, &operation),
                &format!("{backend}: {name}"),
            );
        }
        assert!(!out.join("c-edge.png").exists(), "nothing of the bad input");
    }
}

#[test]
fn a_shared_engine_is_reopened_after_its_device_is_lost_and_work_goes_on() {
    if common::gpu().is_none() {
        return;
    }
    let opened = Arc::new(AtomicUsize::new(0));
    let devices = Arc::new(std::sync::Mutex::new(Vec::new()));
    let engine = SharedEngine::deferred({
        let (opened, devices) = (opened.clone(), devices.clone());
        move |_| {
            let engine = Engine::new(BackendChoice::Gpu)?;
            opened.fetch_add(1, Ordering::SeqCst);
            devices
                .lock()
                .unwrap()
                .push(engine.gpu().expect("a GPU engine").device().clone());
            Ok(engine)
        }
    });
    let image = common::random_image(45, 31, 255, 9);
    let operation = Operation::edge(Kernel::vertical_lines(), Kernel::horizontal_lines());
    let expected = common::reference_image(&image, &operation);
    let workload = gpuconv::Workload::new(&operation, 45 * 31, None);
    let first = engine
        .run_waiting(&workload, |engine| engine.run(&image, &operation))
        .unwrap();
    common::assert_same(&first.combined.unwrap(), &expected, "before");
    assert_eq!(engine.backend(), "gpu");

    devices.lock().unwrap()[0].destroy();
    // Whether the loss is noticed by the watcher first or by this run, the run waits for the
    // new device and filters on it.
    let again = engine
        .run_waiting(&workload, |engine| engine.run(&image, &operation))
        .unwrap();
    common::assert_same(&again.combined.unwrap(), &expected, "after");
    assert_eq!(opened.load(Ordering::SeqCst), 2, "opened again, once");
    assert!(!engine.is_lost());
}

#[test]
fn an_answer_encoded_in_memory_counts_against_the_budget() {
    // Streamed to a file, 4.2 megapixels need a few bands; encoded in memory, the answer too.
    let image = common::random_image(2049, 2051, 3, 11);
    let png = encoded(&image, "png");
    let operation = Operation::edge(Kernel::vertical_lines(), Kernel::horizontal_lines());
    let settings = Settings {
        limits: gpuconv::io::ReadLimits {
            max_memory: 6 << 20,
            ..Default::default()
        },
        ..Settings::new(&operation)
    };
    let source = Source::Bytes {
        bytes: png.into(),
        name: "flat.png".into(),
    };
    let dir = tempfile::tempdir().unwrap();
    let engine = SharedEngine::deferred(|_| Ok(Engine::from(CpuBackend::new())));
    let to_file = Destination::Files(vec![dir.path().join("edge.png")]);
    let filtered = filter_image(&engine, &source, &to_file, &settings).unwrap();
    assert!(filtered.streamed);
    let refused = filter_image(
        &engine,
        &source,
        &Destination::Encoded("pgm".into()),
        &settings,
    )
    .unwrap_err();
    assert!(refused.is_over_budget(), "{refused}");
}

#[test]
fn outputs_written_whole_appear_all_or_none() {
    let dir = tempfile::tempdir().unwrap();
    let image = common::random_image(41, 23, 255, 12);
    let input = dir.path().join("in.png");
    image.save(&input).unwrap();
    let operation = edge_and_responses();
    let engine = SharedEngine::deferred(|_| Ok(Engine::from(CpuBackend::new())));
    let good = dir.path().join("edge.bmp");
    let also_good = dir.path().join("vertical.bmp");
    // The last output's folder does not exist: nothing may be left of the others.
    let bad = dir.path().join("missing").join("horizontal.bmp");
    let error = filter_image(
        &engine,
        &Source::File(input.clone()),
        &Destination::Files(vec![good.clone(), also_good.clone(), bad]),
        &Settings::new(&operation),
    )
    .unwrap_err();
    assert!(error.path().is_some(), "{error}");
    assert_eq!(common::listing(dir.path()), ["in.png"]);
    // The wrong number of files is refused before anything is read.
    let error = filter_image(
        &engine,
        &Source::File(input),
        &Destination::Files(vec![good]),
        &Settings::new(&operation),
    )
    .unwrap_err();
    assert!(error.to_string().contains("1 output files"), "{error}");
    assert_eq!(common::listing(dir.path()), ["in.png"]);
}
