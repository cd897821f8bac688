//! Arbitrary bytes through `gpuconv::io::decode_gray`, the format guessed from the contents
//! (the name has no extension). Any result is fine; a panic, an abort, a timeout or memory
//! beyond libFuzzer's `-rss_limit_mb` is a bug: every allocation is meant to be judged from the
//! header against `max_memory` (256 MiB here) before it is made.
//!
//! A panic inside a third-party decoder is caught by gpuconv and returned as `Error::Corrupt`
//! (that is the product's promise); `quiet_decoder_panics` keeps libFuzzer's panic hook, which
//! aborts, from firing for those. Any other panic still aborts and is reported.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    gpuconv::io::quiet_decoder_panics();
    let limits = gpuconv::io::ReadLimits {
        max_pixels: 1 << 22,
        max_memory: 256 << 20,
        output_images: 1,
        encoded_images: 0,
        // Half the inputs turned upright by their orientation, exercising that path too.
        orient: data.len() % 2 == 1,
    };
    if let Ok(gray) = gpuconv::io::decode_gray(data, std::path::Path::new("fuzz-input"), &limits) {
        let (width, height) = gray.dimensions();
        assert!(u64::from(width) * u64::from(height) <= limits.max_pixels);
        assert_eq!(gray.as_raw().len(), width as usize * height as usize);
    }
});
