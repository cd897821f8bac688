//! Arbitrary gray images through gpuconv's PNG encoder, every compression, rows handed over in
//! arbitrary pieces: the file must decode (with the `image` crate's PNG decoder) to exactly the
//! pixels written. The first bytes choose the size, the compression and the pieces; the rest
//! are the pixels, repeated to fill the image.
#![no_main]

use gpuconv::io::{self, Compression, EncodedRows};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&[w, h, how, piece], pixels)) = data.split_first_chunk::<4>() else {
        return;
    };
    if pixels.is_empty() {
        return;
    }
    // Up to 2048 wide, so that a row can span bands; up to 64 rows.
    let width = 1 + u32::from(w) * 8;
    let height = 1 + u32::from(h) % 64;
    let compression = Compression::ALL[usize::from(how) % 3].1;
    let image: Vec<u8> = pixels
        .iter()
        .copied()
        .cycle()
        .take((width * height) as usize)
        .collect();
    let encoded = EncodedRows::default();
    let mut sink = io::encode_rows("png", width, height, compression, encoded.clone())
        .expect("PNG is written in rows")
        .expect("PNG is written in rows");
    let rows_per_piece = 1 + usize::from(piece) % 16;
    for rows in image.chunks(rows_per_piece * width as usize) {
        sink.write_rows(rows).expect("memory takes every write");
    }
    sink.finish().expect("every row written");
    let file = encoded.take();
    let decoded = image::load_from_memory_with_format(&file, image::ImageFormat::Png)
        .expect("the file decodes")
        .into_luma8();
    assert_eq!(decoded.dimensions(), (width, height));
    assert!(decoded.as_raw() == &image, "pixels differ");
});
