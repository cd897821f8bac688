//! Colour images become gray exactly as the lesson's `Image.open(path).convert('L')` makes them.

use std::path::Path;

/// `tests/fixtures/coffee-pillow-L.png` was written by Pillow 13.0.0:
/// `Image.open('img/coffee.png').convert('L').save('tests/fixtures/coffee-pillow-L.png')`.
#[test]
fn colour_photo_matches_pillow_convert_l_bit_for_bit() {
    let ours = gpuconv::io::load_gray(Path::new("img/coffee.png")).unwrap();
    let pillow = image::open("tests/fixtures/coffee-pillow-L.png").unwrap();
    let pillow = pillow.as_luma8().expect("Pillow wrote 8-bit gray");
    assert_eq!(ours.dimensions(), pillow.dimensions());
    let differing = ours
        .as_raw()
        .iter()
        .zip(pillow.as_raw())
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(differing, 0, "{differing} pixels differ from Pillow");
    // A photo, not a flat image: the comparison above means something.
    let distinct: std::collections::HashSet<u8> = ours.as_raw().iter().copied().collect();
    assert!(distinct.len() > 200);
}
