//! Streaming: band by band, the same bits as the whole image, on both backends, in every
//! layout the row readers take, with seams between bands at every height; and a failure
//! mid-stream leaves no file.

mod common;

use std::path::Path;

use common::{cpu, on_every_backend, random_image, raw_outputs, streamed};
use gpuconv::pipeline::{CollectRows, ImageRows, RowSink, filter_rows};
use gpuconv::{CpuBackend, Engine, Kernel, Operation, io};
use image::{DynamicImage, GrayImage};

fn operations() -> Vec<Operation> {
    vec![
        Operation::responses(vec![Kernel::vertical_lines()]).unwrap(),
        Operation::edge(Kernel::vertical_lines(), Kernel::horizontal_lines()).with_responses(),
        Operation::threshold(Kernel::vertical_lines(), Kernel::horizontal_lines(), 200).unwrap(),
        Operation::responses(vec![
            Kernel::named("x").unwrap(),
            Kernel::named("gaussian-blur").unwrap(),
            Kernel::named("sharpen").unwrap(),
        ])
        .unwrap(),
    ]
}

/// Every output of the whole-image path, as raw pixels.
fn whole(image: &GrayImage, operation: &Operation) -> Vec<Vec<u8>> {
    raw_outputs(cpu(image, operation))
}

#[test]
fn bands_of_every_height_give_the_whole_images_bits_on_both_backends() {
    on_every_backend(|name, engine| {
        for (width, height) in [(3, 3), (4, 3), (3, 17), (37, 23), (130, 9), (61, 101)] {
            let image = random_image(width, height, 255, u64::from(width * 1000 + height));
            for operation in operations() {
                let expected = whole(&image, &operation);
                for band_rows in [Some(1), Some(2), Some(3), Some(7), Some(64), None] {
                    assert_eq!(
                        streamed(engine, &image, &operation, band_rows),
                        expected,
                        "{name}, {width}×{height}, bands of {band_rows:?}, {operation:?}"
                    );
                }
            }
        }
    });
}

#[test]
fn a_sink_count_that_does_not_match_the_operation_is_an_error() {
    let image = random_image(9, 9, 255, 1);
    let mut engine = Engine::from(CpuBackend::new());
    let operation = Operation::responses(vec![Kernel::vertical_lines()]).unwrap();
    let error = filter_rows(
        &mut engine,
        &mut ImageRows::new(&image),
        &operation,
        Vec::new(),
        None,
    )
    .unwrap_err();
    assert!(error.to_string().contains("0 sinks"), "{error}");
    let tiny = random_image(2, 9, 255, 1);
    let sinks: Vec<Box<dyn RowSink>> = vec![Box::new(CollectRows::default())];
    let error = filter_rows(
        &mut engine,
        &mut ImageRows::new(&tiny),
        &operation,
        sinks,
        None,
    )
    .unwrap_err();
    assert!(
        matches!(error, gpuconv::Error::ImageTooSmall { .. }),
        "{error:?}"
    );
}

/// Files of every layout the row readers take, made by the `image` crate.
fn streamable_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let colour = image::RgbaImage::from_fn(53, 41, |x, y| {
        let v = random_image(53, 41, 255, 5).get_pixel(x, y)[0];
        image::Rgba([v, v.wrapping_mul(7), (x * 5 + y) as u8, (x * y) as u8])
    });
    let colour = DynamicImage::ImageRgba8(colour);
    let stripes = image::RgbaImage::from_fn(53, 41, |x, y| {
        let band = ((x / 6 + y / 9) % 4) as u8;
        let step = ((x + y) % 3) as u8;
        image::Rgba([
            band * 60 + step,
            band * 20,
            200 - band * 30 + step * 9,
            255 - band,
        ])
    });
    let layouts = [
        ("l8", DynamicImage::ImageLuma8(colour.to_luma8())),
        ("la8", DynamicImage::ImageLumaA8(colour.to_luma_alpha8())),
        ("rgb8", DynamicImage::ImageRgb8(colour.to_rgb8())),
        ("rgba8", colour.clone()),
        ("l16", DynamicImage::ImageLuma16(colour.to_luma16())),
        ("la16", DynamicImage::ImageLumaA16(colour.to_luma_alpha16())),
        ("rgb16", DynamicImage::ImageRgb16(colour.to_rgb16())),
        ("rgba16", DynamicImage::ImageRgba16(colour.to_rgba16())),
        // Flat stripes and small steps: QOI codes them with runs, cache hits and differences.
        ("stripes", DynamicImage::ImageRgba8(stripes.clone())),
        (
            "stripes-rgb",
            DynamicImage::ImageRgb8(DynamicImage::ImageRgba8(stripes).to_rgb8()),
        ),
    ];
    let mut files = Vec::new();
    for (name, image) in layouts {
        let png = dir.join(format!("{name}.png"));
        image.save(&png).unwrap();
        files.push(png);
        // PNM: P5/P6 for gray and RGB, P7 (PAM) for alpha, at 8 and 16 bits; TIFF in strips;
        // QOI for RGB and RGBA.
        for (extension, format) in [
            ("pnm", image::ImageFormat::Pnm),
            ("tif", image::ImageFormat::Tiff),
            ("qoi", image::ImageFormat::Qoi),
        ] {
            let path = dir.join(format!("{name}.{extension}"));
            if image.save_with_format(&path, format).is_ok() {
                files.push(path);
            }
        }
    }
    // A palette PNG and a 1-bit gray PNG, which the reader expands to 8 bits.
    for (name, colour_type, depth, data) in [
        (
            "palette",
            png::ColorType::Indexed,
            png::BitDepth::Eight,
            (0..53 * 41).map(|i| (i % 3) as u8).collect::<Vec<u8>>(),
        ),
        (
            "bits",
            png::ColorType::Grayscale,
            png::BitDepth::One,
            vec![0b1011_0010; 7 * 41],
        ),
    ] {
        let path = dir.join(format!("{name}.png"));
        let file = std::fs::File::create(&path).unwrap();
        let mut encoder = png::Encoder::new(file, 53, 41);
        encoder.set_color(colour_type);
        encoder.set_depth(depth);
        if colour_type == png::ColorType::Indexed {
            encoder.set_palette(vec![255, 0, 0, 0, 255, 0, 10, 20, 30]);
        }
        let mut writer = encoder.write_header().unwrap();
        writer.write_image_data(&data).unwrap();
        writer.finish().unwrap();
        files.push(path);
    }
    files
}

#[test]
fn every_streamable_layout_reads_as_the_whole_image_does() {
    let dir = tempfile::tempdir().unwrap();
    let limits = io::ReadLimits::default();
    let files = streamable_files(dir.path());
    assert!(files.len() >= 30, "{files:?}");
    let qoi = files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "qoi"));
    assert!(qoi.count() >= 4, "{files:?}");
    let operation = Operation::edge(Kernel::vertical_lines(), Kernel::horizontal_lines());
    for path in files {
        let whole_image = io::load_gray_with(&path, &limits).unwrap();
        let mut rows = io::open_rows(&path, &limits)
            .unwrap()
            .unwrap_or_else(|| panic!("{} does not stream", path.display()));
        assert_eq!((rows.width(), rows.height()), whole_image.dimensions());
        let mut collected = CollectRows::default();
        let mut engine = Engine::from(CpuBackend::new());
        let sinks: Vec<Box<dyn RowSink + '_>> = vec![Box::new(&mut collected)];
        filter_rows(&mut engine, rows.as_mut(), &operation, sinks, Some(5)).unwrap();
        assert_eq!(
            collected.rows(),
            whole(&whole_image, &operation)[0].as_slice(),
            "{}",
            path.display()
        );
    }
}

#[test]
fn interlaced_and_other_formats_are_left_to_the_whole_image_path() {
    let dir = tempfile::tempdir().unwrap();
    let image = DynamicImage::ImageLuma8(random_image(20, 20, 255, 9));
    for extension in ["jpg", "bmp", "webp", "tga"] {
        let path = dir.path().join(format!("in.{extension}"));
        DynamicImage::ImageRgb8(image.to_rgb8())
            .save(&path)
            .unwrap();
        assert!(
            io::open_rows(&path, &io::ReadLimits::default())
                .unwrap()
                .is_none(),
            "{extension}"
        );
    }
    // Plain (ASCII) PGM and a maxval other than 255 or 65535.
    let ascii = dir.path().join("ascii.pgm");
    std::fs::write(&ascii, b"P2\n3 3\n255\n1 2 3 4 5 6 7 8 9\n").unwrap();
    let maxval = dir.path().join("maxval.pgm");
    std::fs::write(
        &maxval,
        b"P5\n3 3\n100\n\x01\x02\x03\x04\x05\x06\x07\x08\x09",
    )
    .unwrap();
    for path in [ascii, maxval] {
        assert!(
            io::open_rows(&path, &io::ReadLimits::default())
                .unwrap()
                .is_none()
        );
    }
}

#[test]
fn row_sinks_write_files_only_when_finished() {
    let dir = tempfile::tempdir().unwrap();
    // TIFF strips hold about 1 MB: 1001 columns make 1000-row strips, so 2503 rows need three,
    // the last one short, and the bands below cross their seams.
    for (name, width, height) in [
        ("out.png", 31, 12),
        ("out.pgm", 31, 12),
        ("out.tif", 1001, 2503),
    ] {
        let image = random_image(width, height, 255, 17);
        let path = dir.path().join(name);
        let mut sink = io::create_row_sink(&path, width, height, io::Compression::default())
            .unwrap()
            .unwrap();
        let row = width as usize;
        let mut rest = image.as_raw().as_slice();
        for band_rows in [5, 1, 333].into_iter().cycle() {
            let take = (band_rows * row).min(rest.len());
            sink.write_rows(&rest[..take]).unwrap();
            rest = &rest[take..];
            if rest.is_empty() {
                break;
            }
        }
        assert!(!path.exists(), "{name} appeared before it was finished");
        sink.finish().unwrap();
        assert_eq!(io::load_gray(&path).unwrap(), image, "{name}");
        // Dropped unfinished: nothing, not even the hidden partial file.
        let dropped = dir.path().join(format!("dropped-{name}"));
        let mut sink = io::create_row_sink(&dropped, width, height, io::Compression::default())
            .unwrap()
            .unwrap();
        sink.write_rows(&image.as_raw()[..row]).unwrap();
        drop(sink);
        assert!(!dropped.exists());
    }
    let names: Vec<String> = common::listing(dir.path());
    assert_eq!(names, ["out.pgm", "out.png", "out.tif"]);
    for other in ["out.bmp", "out.jpg", "out.webp"] {
        assert!(
            io::create_row_sink(&dir.path().join(other), 3, 3, io::Compression::default())
                .unwrap()
                .is_none(),
            "{other}"
        );
    }
}

#[test]
fn every_fuzz_seed_that_streams_gives_the_whole_images_result() {
    let limits = io::ReadLimits::default();
    let operation = Operation::edge(Kernel::vertical_lines(), Kernel::horizontal_lines());
    let mut seeds: Vec<_> = std::fs::read_dir("fuzz/seeds/decode")
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    seeds.sort();
    let mut streamed = Vec::new();
    for path in seeds {
        let Some(mut rows) = io::open_rows(&path, &limits).unwrap() else {
            continue;
        };
        let whole_image = io::load_gray_with(&path, &limits).unwrap();
        if whole_image.width() < 3 || whole_image.height() < 3 {
            continue;
        }
        let mut collected = CollectRows::default();
        let mut engine = Engine::from(CpuBackend::new());
        let sinks: Vec<Box<dyn RowSink + '_>> = vec![Box::new(&mut collected)];
        filter_rows(&mut engine, rows.as_mut(), &operation, sinks, Some(2)).unwrap();
        assert_eq!(
            collected.rows(),
            whole(&whole_image, &operation)[0].as_slice(),
            "{}",
            path.display()
        );
        streamed.push(path.file_name().unwrap().to_string_lossy().into_owned());
    }
    // PNG, binary PNM and every TIFF stream; interlaced PNG and plain PNM do not.
    for name in [
        "gray.png",
        "rgba.png",
        "gray16.png",
        "palette.png",
        "gray.pgm",
        "rgb.ppm",
        "rgba.pam",
        "gray-raw.tif",
        "gray-deflate.tif",
        "gray16.tif",
        "rgb-lzw.tif",
        "rgba-packbits.tif",
        "gray-float32.tif",
    ] {
        assert!(
            streamed.iter().any(|s| s == name),
            "{name} did not stream: {streamed:?}"
        );
    }
    for name in [
        "rgb-interlaced.png",
        "plain-gray.pgm",
        "plain-gray-maxval15.pgm",
    ] {
        assert!(!streamed.iter().any(|s| s == name), "{name} streamed");
    }
}

#[test]
fn hostile_streams_are_refused_like_whole_images() {
    let dir = tempfile::tempdir().unwrap();
    let limits = io::ReadLimits::default();
    let image = DynamicImage::ImageLuma8(random_image(64, 48, 255, 77));
    let png = dir.path().join("whole.png");
    image.save(&png).unwrap();
    let bytes = std::fs::read(&png).unwrap();
    let operation = Operation::responses(vec![Kernel::vertical_lines()]).unwrap();
    // Cut in its last bytes (IEND, the last chunk's CRC, the zlib checksum): every row may
    // decode, and still the stream must answer as the whole-image path does.
    let mut refused = 0;
    for cut in [4, 8, 12, 16, 20] {
        let path = dir.path().join(format!("cut{cut}.png"));
        std::fs::write(&path, &bytes[..bytes.len() - cut]).unwrap();
        let whole_result = io::load_gray_with(&path, &limits);
        let mut rows = io::open_rows(&path, &limits).unwrap().unwrap();
        let mut collected = CollectRows::default();
        let mut engine = Engine::from(CpuBackend::new());
        let sinks: Vec<Box<dyn RowSink + '_>> = vec![Box::new(&mut collected)];
        let streamed = filter_rows(&mut engine, rows.as_mut(), &operation, sinks, None);
        match (whole_result, streamed) {
            (Ok(image), Ok(_)) => {
                assert_eq!(collected.rows(), whole(&image, &operation)[0].as_slice());
            }
            (Err(_), Err(error)) => {
                assert!(
                    matches!(
                        error,
                        gpuconv::Error::Truncated { .. } | gpuconv::Error::Corrupt { .. }
                    ),
                    "cut {cut}: {error:?}"
                );
                refused += 1;
            }
            (whole_result, streamed) => panic!(
                "cut {cut}: whole image {:?}, streamed {:?}",
                whole_result.map(|_| ()),
                streamed.map(|_| ())
            ),
        }
    }
    assert!(refused >= 2, "only {refused} cuts were refused");
    // A header whose size overflows 64 bits is over the pixel limit, not a panic.
    let huge = dir.path().join("huge.pgm");
    std::fs::write(&huge, b"P5\n4294967295 4294967295\n65535\n\x00\x00").unwrap();
    assert!(matches!(
        io::open_rows(&huge, &limits),
        Err(gpuconv::Error::TooManyPixels { .. })
    ));
    // Bands need memory too (a band is at most the image, here 64×48: about 5 bands of 3 KiB
    // in all): a budget too small for them is refused before reading.
    let tight = io::ReadLimits {
        max_memory: 4 << 10,
        ..limits
    };
    assert!(matches!(
        io::open_rows(&png, &tight),
        Err(gpuconv::Error::OverBudget { .. })
    ));
    // PAM headers the row reader does not take exactly as the whole-image path would are left
    // to it: a CR before the newline, a tuple type that does not match the depth, none at all.
    for (name, header) in [
        (
            "crlf",
            "P7\nWIDTH 3\nHEIGHT 3\nDEPTH 1\nMAXVAL 255\nTUPLTYPE GRAYSCALE\nENDHDR\r\n",
        ),
        (
            "cmyk",
            "P7\nWIDTH 3\nHEIGHT 3\nDEPTH 4\nMAXVAL 255\nTUPLTYPE CMYK\nENDHDR\n",
        ),
        (
            "untyped",
            "P7\nWIDTH 3\nHEIGHT 3\nDEPTH 1\nMAXVAL 65535\nENDHDR\n",
        ),
    ] {
        let path = dir.path().join(format!("{name}.pam"));
        let mut bytes = header.as_bytes().to_vec();
        bytes.extend_from_slice(&[7; 72]);
        std::fs::write(&path, bytes).unwrap();
        assert!(io::open_rows(&path, &limits).unwrap().is_none(), "{name}");
    }
    // A band taller than the image is the whole image.
    let small = random_image(5, 4, 255, 3);
    let mut engine = Engine::from(CpuBackend::new());
    assert_eq!(
        streamed(&mut engine, &small, &operation, Some(u32::MAX)),
        whole(&small, &operation)
    );
}

/// A three-channel QOI file with every op, the RGBA op included (which such a file should not
/// hold: the `qoi` crate, and so the whole-image path, reads no bytes for it and repeats the
/// last pixel), a cache hit on an entry never written, and a run past the last pixel: the rows
/// are the whole image's.
#[test]
fn hand_made_qoi_ops_stream_as_the_whole_image_decodes_them() {
    let (width, height) = (5u32, 4u32);
    let mut file = b"qoif".to_vec();
    file.extend(width.to_be_bytes());
    file.extend(height.to_be_bytes());
    file.extend([3, 0]);
    file.extend([0xfe, 200, 100, 50]); // RGB
    file.extend([0x40 | 0b11_01_00]); // DIFF: r+1, g-1, b-2
    file.extend([0x80 | 40, 0x3c]); // LUMA: g+8, r+8-8+3, b+8-8+12
    file.push(0xff); // RGBA in a three-channel file
    file.push(0x05); // INDEX, never written: black
    file.extend([0xfe, 9, 99, 199]);
    file.push(0xc0 | 3); // RUN of 4
    file.push(0x40 | 0b10_10_10); // DIFF of zero
    file.push(0xc0 | 61); // RUN of 62, cut at the last pixel
    file.extend([0, 0, 0, 0, 0, 0, 0, 1]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ops.qoi");
    std::fs::write(&path, &file).unwrap();
    let limits = io::ReadLimits::default();
    let whole_image = io::load_gray_with(&path, &limits).unwrap();
    let mut rows = io::open_rows(&path, &limits).unwrap().expect("QOI streams");
    let mut pixels = vec![0; (width * height) as usize];
    rows.read_rows(&mut pixels).unwrap();
    assert_eq!(pixels, whole_image.into_raw());
    // The same file cut short, or with the wrong padding, is an error.
    for (name, bytes) in [
        ("cut", file[..file.len() - 12].to_vec()),
        ("padding", [&file[..file.len() - 1], &[7]].concat()),
    ] {
        let path = dir.path().join(format!("{name}.qoi"));
        std::fs::write(&path, bytes).unwrap();
        let mut rows = io::open_rows(&path, &limits).unwrap().expect("QOI streams");
        let mut pixels = vec![0; (width * height) as usize];
        assert!(rows.read_rows(&mut pixels).is_err(), "{name}");
    }
}

/// A sink that takes every row and then fails to end them, as a full disk would.
struct FailsAtTheEnd;

impl RowSink for FailsAtTheEnd {
    fn write_rows(&mut self, _rows: &[u8]) -> gpuconv::Result<()> {
        Ok(())
    }

    fn end_rows(&mut self) -> gpuconv::Result<()> {
        Err(gpuconv::Error::InvalidOperation("no space left".to_owned()))
    }

    fn finish(self: Box<Self>) -> gpuconv::Result<()> {
        panic!("finished after its rows failed to end")
    }
}

#[test]
fn an_output_failing_at_its_end_leaves_none_of_the_images_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let image = random_image(41, 29, 255, 5);
    let operation =
        Operation::edge(Kernel::vertical_lines(), Kernel::horizontal_lines()).with_responses();
    // The edge image and the vertical response go to real files, listed before the failing
    // sink: neither may appear.
    let sinks: Vec<Box<dyn RowSink>> = vec![
        io::create_row_sink(
            &dir.path().join("edge.png"),
            39,
            27,
            io::Compression::default(),
        )
        .unwrap()
        .unwrap(),
        io::create_row_sink(
            &dir.path().join("vertical.tif"),
            39,
            27,
            io::Compression::default(),
        )
        .unwrap()
        .unwrap(),
        Box::new(FailsAtTheEnd),
    ];
    let mut engine = Engine::from(CpuBackend::new());
    let error = filter_rows(
        &mut engine,
        &mut ImageRows::new(&image),
        &operation,
        sinks,
        Some(4),
    )
    .unwrap_err();
    assert!(error.to_string().contains("no space left"), "{error}");
    assert!(
        common::listing(dir.path()).is_empty(),
        "{:?}",
        common::listing(dir.path())
    );
}
