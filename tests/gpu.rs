//! GPU-only behaviour: devices with small limits, dispatches spilling past the per-dimension
//! workgroup limit, buffer reuse across image sizes.

mod common;

use common::app::App;
use common::{assert_same_output, random_image};
use gpuconv::{Engine, Error, GpuEngine, Kernel, Operation, reference};

fn edge_with_responses() -> Operation {
    Operation::edge(Kernel::vertical_lines(), Kernel::horizontal_lines()).with_responses()
}

#[test]
fn dispatch_spills_into_a_second_dimension_past_the_workgroup_limit() {
    let Some(app) = App::with_adapter_limits(|l| l.max_compute_workgroups_per_dimension = 4) else {
        return;
    };
    let mut engine = GpuEngine::from_device(&app.device, &app.queue).unwrap();
    // 301×203 gives ceil(299 / 16) = 19 invocations per row and ceil(201 / 4) = 51 rows of
    // them: 969 invocations, 16 workgroups of 64, so 4 rows of 4.
    assert_eq!(engine.rows_per_invocation(), 4);
    let image = random_image(301, 203, 255, 7);
    let operation = edge_with_responses();
    assert_same_output(
        &engine.run(&image, &operation).unwrap(),
        &reference::run(&image, &operation),
        "spilled dispatch",
    );
}

#[test]
fn images_larger_than_the_device_allows_run_in_strips_or_get_an_error_naming_the_limit() {
    let Some(app) = App::with_adapter_limits(|l| l.max_storage_buffer_binding_size = 1 << 16)
    else {
        return;
    };
    let mut engine = GpuEngine::from_device(&app.device, &app.queue).unwrap();
    // 300×300 needs 90000 input bytes, more than one 64 KiB binding: it runs in strips.
    let image = random_image(300, 300, 255, 1);
    let operation = edge_with_responses();
    assert_same_output(
        &engine.run(&image, &operation).unwrap(),
        &reference::run(&image, &operation),
        "strips",
    );
    // A single row of windows (3 input rows) wider than a binding cannot be split further.
    let wide = random_image(30_000, 3, 255, 2);
    match engine.run(&wide, &operation) {
        Err(error @ Error::TooLargeForDevice { limit: 65536, .. }) => {
            let message = error.to_string();
            assert!(
                message.contains("max_storage_buffer_binding_size"),
                "{message}"
            );
            assert!(message.contains("30000×3"), "{message}");
        }
        other => panic!("expected TooLargeForDevice, got {other:?}"),
    }
}

#[test]
fn strips_of_any_height_are_bit_identical_to_one_pass() {
    let Some(mut engine) = common::gpu() else {
        return;
    };
    let cases = [
        (37, 23, 1),
        (101, 64, 2),
        (64, 9, 3),
        (513, 300, 7),
        (1001, 211, 64),
    ];
    for (i, (width, height, rows)) in cases.into_iter().enumerate() {
        let image = random_image(width, height, 255, 40 + i as u64);
        let operations = [
            edge_with_responses(),
            Operation::responses(vec![
                Kernel::named("box-blur").unwrap(),
                Kernel::named("x").unwrap(),
            ])
            .unwrap(),
            Operation::threshold(Kernel::vertical_lines(), Kernel::horizontal_lines(), 200)
                .unwrap(),
        ];
        for operation in operations {
            engine.set_max_strip_rows(None);
            let whole = engine.run(&image, &operation).unwrap();
            engine.set_max_strip_rows(Some(rows));
            let what = format!("{width}×{height} in strips of {rows} rows, {operation:?}");
            assert_same_output(&engine.run(&image, &operation).unwrap(), &whole, &what);
            let asynchronous = pollster::block_on(engine.run_async(&image, &operation)).unwrap();
            assert_same_output(&asynchronous, &whole, &format!("{what}, async"));
            if operation.kernels().iter().all(Kernel::is_integer) {
                assert_same_output(
                    &whole,
                    &reference::run(&image, &operation),
                    &format!("{what}, reference"),
                );
            }
        }
    }
}

#[test]
fn one_engine_serves_many_sizes_reusing_and_growing_its_buffers() {
    let Some(mut engine) = common::gpu() else {
        return;
    };
    let operation = edge_with_responses();
    for (i, (width, height)) in [(640, 480), (17, 5), (1001, 999), (3, 3), (640, 481)]
        .into_iter()
        .enumerate()
    {
        let image = random_image(width, height, 255, i as u64);
        let what = format!("{width}×{height} after other sizes");
        assert_same_output(
            &engine.run(&image, &operation).unwrap(),
            &reference::run(&image, &operation),
            &what,
        );
    }
}

#[test]
fn images_smaller_than_the_kernel_are_errors() {
    let Some(mut engine) = common::gpu() else {
        return;
    };
    let operation = Operation::responses(vec![Kernel::vertical_lines()]).unwrap();
    for (width, height) in [(2, 10), (10, 2), (1, 1)] {
        let image = random_image(width, height, 255, 0);
        assert!(matches!(
            engine.run(&image, &operation),
            Err(Error::ImageTooSmall { .. })
        ));
    }
}

#[test]
fn timed_runs_in_strips_sum_every_strip_and_report_the_whole_call() {
    let Some(mut engine) = common::gpu() else {
        return;
    };
    let image = random_image(257, 131, 255, 11);
    let operation = edge_with_responses();
    // 129 output rows in strips of 10: 13 strips through the two slots, several times over.
    engine.set_max_strip_rows(Some(10));
    let (output, timings) = engine.run_timed(&image, &operation).unwrap();
    assert_same_output(&output, &reference::run(&image, &operation), "timed strips");
    let total = timings.total.expect("total is always timed");
    for (stage, time) in [
        ("upload", timings.upload),
        ("compute", timings.compute),
        ("readback", timings.readback),
    ] {
        let time = time.unwrap_or_else(|| panic!("{stage} not timed"));
        assert!(
            time <= total,
            "{stage} {time:?} longer than the call {total:?}"
        );
    }
    if engine
        .device()
        .features()
        .contains(wgpu::Features::TIMESTAMP_QUERY)
    {
        assert!(
            timings
                .kernel
                .is_some_and(|k| k > std::time::Duration::ZERO)
        );
    }
}

#[test]
fn a_strip_cap_set_by_one_test_is_gone_for_the_next() {
    {
        let Some(mut engine) = common::gpu() else {
            return;
        };
        engine.set_max_strip_rows(Some(3));
        assert_eq!(engine.max_strip_rows(), Some(3));
    }
    assert_eq!(common::gpu().unwrap().max_strip_rows(), None);
}

#[test]
fn every_rows_per_invocation_gives_the_same_bits_in_one_pass_and_in_strips() {
    let Some(mut engine) = common::gpu() else {
        return;
    };
    let operations = [
        edge_with_responses(),
        Operation::responses(vec![
            Kernel::named("box-blur").unwrap(),
            Kernel::named("x").unwrap(),
            Kernel::named("sharpen").unwrap(),
        ])
        .unwrap(),
        Operation::threshold(Kernel::vertical_lines(), Kernel::horizontal_lines(), 90).unwrap(),
    ];
    for (i, (width, height, strip_rows)) in [(37, 23, None), (101, 64, Some(7)), (9, 3, None)]
        .into_iter()
        .enumerate()
    {
        let image = random_image(width, height, 255, 70 + i as u64);
        for operation in &operations {
            engine.set_rows_per_invocation(1);
            engine.set_max_strip_rows(None);
            let one_row = engine.run(&image, operation).unwrap();
            if operation.kernels().iter().all(Kernel::is_integer) {
                assert_same_output(&one_row, &reference::run(&image, operation), "1 row");
            }
            engine.set_max_strip_rows(strip_rows);
            for rows in [2, 3, 4, 8] {
                engine.set_rows_per_invocation(rows);
                assert_eq!(engine.rows_per_invocation(), rows);
                let what = format!("{width}×{height}, {rows} rows per invocation, {operation:?}");
                assert_same_output(&engine.run(&image, operation).unwrap(), &one_row, &what);
            }
        }
    }
    // Out of range: clamped, never a shader that computes nothing.
    engine.set_rows_per_invocation(0);
    assert_eq!(engine.rows_per_invocation(), 1);
    engine.set_rows_per_invocation(1000);
    assert_eq!(
        engine.rows_per_invocation(),
        gpuconv::gpu::MAX_ROWS_PER_INVOCATION
    );
}

#[test]
fn strips_larger_than_one_copy_task_are_copied_in_and_out_exactly_on_many_threads() {
    let Some(mut engine) = common::gpu() else {
        return;
    };
    // 3001 columns (rows padded to 3004 bytes on the GPU) × 900 rows: 2.7 MB in, copied in
    // 1 MiB tasks, whole and in strips of 301 rows whose tasks end mid-strip.
    let image = random_image(3001, 900, 255, 99);
    let operation = edge_with_responses();
    let expected = reference::run(&image, &operation);
    for strip_rows in [None, Some(301)] {
        engine.set_max_strip_rows(strip_rows);
        assert_same_output(
            &engine.run(&image, &operation).unwrap(),
            &expected,
            &format!("strips of {strip_rows:?}"),
        );
    }
}

#[test]
fn a_routed_engine_sends_small_images_to_the_cpu_and_large_ones_to_the_gpu_exactly() {
    if common::gpu().is_none() {
        return;
    }
    let mut engine = Engine::routed(GpuEngine::new().unwrap()).unwrap();
    assert!(engine.is_routed() && engine.is_gpu());
    assert!(
        engine.describe().ends_with("by image"),
        "{}",
        engine.describe()
    );
    let operation = Operation::edge(Kernel::vertical_lines(), Kernel::horizontal_lines());
    // A 1080p edge image goes to the GPU on up to 2 × 1.36 / 0.55 ≈ 5 threads by the estimate
    // (gpuconv::auto); a tiny one never does.
    let threads = rayon::current_num_threads();
    let sizes = [(33, 17), (1921, 1081)];
    for (width, height) in sizes {
        let image = random_image(width, height, 255, u64::from(width));
        let pixels = u64::from(width) * u64::from(height);
        let workload = gpuconv::Workload::new(&operation, pixels, None);
        let expected = if workload.decide(threads, None).gpu {
            "gpu"
        } else {
            "cpu"
        };
        assert_eq!(engine.backend_for(width, height, &operation), expected);
        if width == 33 {
            assert_eq!(expected, "cpu");
        } else if threads <= 4 {
            assert_eq!(expected, "gpu", "{threads} threads");
        }
        assert_same_output(
            &engine.run(&image, &operation).unwrap(),
            &reference::run(&image, &operation),
            &format!("{width}×{height} on the {expected}"),
        );
    }
}

#[test]
fn an_engine_started_from_another_engines_pipeline_cache_gives_the_same_bits() {
    if common::gpu().is_none() {
        return;
    }
    let operation = edge_with_responses();
    let image = random_image(45, 31, 255, 3);
    let mut first = GpuEngine::new().unwrap();
    first.run(&image, &operation).unwrap();
    // Vulkan devices opened by gpuconv have a pipeline cache; other backends none.
    let Some(data) = first.pipeline_cache_data() else {
        assert_ne!(first.adapter_info().backend, wgpu::Backend::Vulkan);
        return;
    };
    let mut second = GpuEngine::new().unwrap();
    // SAFETY: the data comes from pipeline_cache_data of an engine on the same adapter.
    unsafe { second.load_pipeline_cache(&data) };
    assert_same_output(
        &second.run(&image, &operation).unwrap(),
        &reference::run(&image, &operation),
        "from a loaded cache",
    );
}
