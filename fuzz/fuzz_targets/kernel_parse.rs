//! Arbitrary text through the command line's parsers: `Kernel::parse`, `io::parse_bytes` and
//! `io::parse_positive_count` must never panic. A kernel that parses is run on the CPU backend
//! over a fixed 5×5 image and compared with `reference::convolve`: bit for bit, as the README
//! promises for the CPU backend.
#![no_main]

use gpuconv::{CpuBackend, Kernel, Operation};
use image::GrayImage;
use libfuzzer_sys::fuzz_target;

/// 5×5, with both extremes (0 and 255) and everything between, so that large weights saturate
/// and sums of mixed sign cancel.
const PIXELS: [u8; 25] = [
    0, 255, 1, 254, 128, //
    255, 255, 255, 255, 255, //
    7, 0, 0, 0, 200, //
    31, 127, 129, 64, 3, //
    255, 0, 255, 0, 255, //
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = gpuconv::io::parse_bytes(text);
    if let Ok(n) = gpuconv::io::parse_positive_count(text) {
        assert!(n >= 1, "parse_positive_count({text:?}) gave {n}");
    }
    let Ok(kernel) = Kernel::parse(text, "fuzz") else {
        return;
    };
    // What parses is what `Kernel::new` accepts: finite weights within the documented bounds.
    let limit = if kernel.is_integer() {
        gpuconv::kernel::MAX_WEIGHT
    } else {
        gpuconv::kernel::MAX_FRACTIONAL_WEIGHT
    };
    assert!(
        kernel.weights().iter().all(|w| w.is_finite() && w.abs() <= limit),
        "{text:?} parsed to out-of-range weights {:?}",
        kernel.weights()
    );
    // Printing and parsing again gives the same kernel.
    let printed = kernel.to_string();
    match Kernel::parse(&printed, "fuzz") {
        Ok(again) => assert_eq!(again, kernel, "{text:?} printed as {printed:?}"),
        Err(e) => panic!("{text:?} printed as {printed:?}, which does not parse: {e}"),
    }

    let image = GrayImage::from_raw(5, 5, PIXELS.to_vec()).expect("5×5");
    let operation = Operation::responses(vec![kernel.clone()]).expect("one kernel");
    let output = CpuBackend::new()
        .run(&image, &operation)
        .unwrap_or_else(|e| panic!("CPU backend failed on {text:?}: {e}"));
    assert_eq!(output.responses.len(), 1);
    let cpu = &output.responses[0];
    let reference = gpuconv::reference::convolve(&image, &kernel);
    assert_eq!(cpu.dimensions(), (3, 3));
    assert_eq!(reference.dimensions(), (3, 3));
    // The CPU backend equals the reference bit for bit for every kernel, fractional ones too
    // (both sum in f32 in row-major order); only the GPU may differ by 1 there.
    assert_eq!(
        cpu.as_raw(),
        reference.as_raw(),
        "CPU and reference differ for kernel {kernel}"
    );
});
