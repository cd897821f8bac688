//! Each decoder gpuconv could use on each file given, decoded whole to pixels `--repeat` times
//! (7 by default) in turn: the median wall time and megapixels a second, one thread. gpuconv's
//! own reading (`io::decode_gray`: decode and made gray) is timed beside the raw decoders; for PNG,
//! inflating the zlib stream alone too, with each maintained inflater (libdeflate is C).

use std::io::Cursor;
use std::path::Path;
use std::time::Instant;

type Decode = fn(&[u8]) -> Result<usize, String>;

fn main() {
    let mut repeat = 7;
    let mut files = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--repeat" => {
                repeat = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("--repeat N")
            }
            _ => files.push(arg),
        }
    }
    println!("| file | decoder | median ms | Mpx/s |");
    println!("|---|---|---|---|");
    for file in files {
        let bytes = std::fs::read(&file).expect("readable file");
        let name = Path::new(&file)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let extension = name.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
        let decoders: Vec<(&str, Decode)> = match extension.as_str() {
            "png" => vec![
                ("gpuconv (png 0.18, rows)", gpuconv_gray),
                ("png 0.18 rows", png_rows),
                ("png 0.18 whole", png_whole),
                ("zune-png 0.5", zune_png),
                ("inflate only: fdeflate 0.3", inflate_fdeflate),
                ("inflate only: zlib-rs 0.6 (flate2)", inflate_zlib_rs),
                ("inflate only: libdeflate 1 (C)", inflate_libdeflate),
            ],
            "jpg" | "jpeg" => vec![
                ("gpuconv (zune-jpeg 0.5 via image)", gpuconv_gray),
                ("zune-jpeg 0.5 luma", zune_jpeg_luma),
                ("zune-jpeg 0.5 rgb", zune_jpeg_rgb),
                ("jpeg-decoder 0.3", jpeg_decoder),
            ],
            "tif" | "tiff" => vec![
                ("gpuconv (own reader, tiff 0.11)", gpuconv_gray),
                ("tiff 0.11 read_image", tiff_whole),
                ("image 0.25 (tiff 0.11)", image_whole),
            ],
            _ => vec![("gpuconv", gpuconv_gray)],
        };
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); decoders.len()];
        let mut pixels = vec![0; decoders.len()];
        // Taking turns, so that a slow spell of the machine falls on every decoder alike.
        for _ in 0..repeat {
            for (i, (label, decode)) in decoders.iter().enumerate() {
                let start = Instant::now();
                match decode(&bytes) {
                    Ok(n) => pixels[i] = n,
                    Err(e) => panic!("{name}: {label}: {e}"),
                }
                times[i].push(start.elapsed().as_secs_f64());
            }
        }
        for (i, (label, _)) in decoders.iter().enumerate() {
            times[i].sort_by(f64::total_cmp);
            let median = times[i][times[i].len() / 2];
            let mpx = pixels[i] as f64 / 1e6 / median;
            println!("| {name} | {label} | {:.1} | {mpx:.0} |", median * 1e3);
        }
    }
}

fn gpuconv_gray(bytes: &[u8]) -> Result<usize, String> {
    let limits = gpuconv::io::ReadLimits::default();
    let gray =
        gpuconv::io::decode_gray(bytes, Path::new("input"), &limits).map_err(|e| e.to_string())?;
    Ok(gray.len())
}

fn png_rows(bytes: &[u8]) -> Result<usize, String> {
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info().map_err(|e| e.to_string())?;
    let (width, height) = (reader.info().width as usize, reader.info().height as usize);
    let mut row = vec![0; reader.output_line_size(width as u32).unwrap()];
    for _ in 0..height {
        reader.read_row(&mut row).map_err(|e| e.to_string())?;
    }
    Ok(width * height)
}

fn png_whole(bytes: &[u8]) -> Result<usize, String> {
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info().map_err(|e| e.to_string())?;
    let mut buffer = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buffer).map_err(|e| e.to_string())?;
    Ok(info.width as usize * info.height as usize)
}

/// A PNG's IDAT payload, joined: the zlib stream the inflaters below are timed on.
fn idat(png: &[u8]) -> Vec<u8> {
    let mut stream = Vec::new();
    let mut at = 8;
    while at + 12 <= png.len() {
        let length = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
        if &png[at + 4..at + 8] == b"IDAT" {
            stream.extend_from_slice(&png[at + 8..at + 8 + length]);
        }
        at += 12 + length;
    }
    stream
}

/// The filtered rows' size (what each inflater writes: a row's filter byte and its bytes) and the
/// pixels they hold, which the inflaters report so that their Mpx/s compares with the decoders'.
fn raw_size(png: &[u8]) -> (usize, usize) {
    let decoder = png::Decoder::new(Cursor::new(png));
    let reader = decoder.read_info().unwrap();
    let info = reader.info();
    let pixels = info.width as usize * info.height as usize;
    (info.raw_row_length() * info.height as usize, pixels)
}

// The inflaters are timed with the IDAT gathering and sizing inside, which costs little beside
// inflating and is the same for each.
fn inflate_fdeflate(bytes: &[u8]) -> Result<usize, String> {
    let stream = idat(bytes);
    let (size, pixels) = raw_size(bytes);
    let mut out = vec![0; size];
    let mut decompressor = fdeflate::Decompressor::new();
    let (_, written) = decompressor
        .read(&stream, &mut out, 0, true)
        .map_err(|e| format!("{e:?}"))?;
    (written == size)
        .then_some(pixels)
        .ok_or_else(|| "short stream".into())
}

fn inflate_zlib_rs(bytes: &[u8]) -> Result<usize, String> {
    let stream = idat(bytes);
    let (size, pixels) = raw_size(bytes);
    let mut out = Vec::with_capacity(size);
    flate2::Decompress::new(true)
        .decompress_vec(&stream, &mut out, flate2::FlushDecompress::Finish)
        .map_err(|e| e.to_string())?;
    (out.len() == size)
        .then_some(pixels)
        .ok_or_else(|| "short stream".into())
}

fn inflate_libdeflate(bytes: &[u8]) -> Result<usize, String> {
    let stream = idat(bytes);
    let (size, pixels) = raw_size(bytes);
    let mut out = vec![0; size];
    let written = libdeflater::Decompressor::new()
        .zlib_decompress(&stream, &mut out)
        .map_err(|e| e.to_string())?;
    (written == size)
        .then_some(pixels)
        .ok_or_else(|| "short stream".into())
}

fn zune_png(bytes: &[u8]) -> Result<usize, String> {
    let mut decoder = zune_png::PngDecoder::new(zune_core::bytestream::ZCursor::new(bytes));
    let pixels = decoder.decode_raw().map_err(|e| format!("{e:?}"))?;
    let (width, height) = decoder.dimensions().unwrap();
    std::hint::black_box(pixels);
    Ok(width * height)
}

fn zune_jpeg(bytes: &[u8], colour: zune_core::colorspace::ColorSpace) -> Result<usize, String> {
    let options = zune_core::options::DecoderOptions::default().jpeg_set_out_colorspace(colour);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(
        zune_core::bytestream::ZCursor::new(bytes),
        options,
    );
    let pixels = decoder.decode().map_err(|e| format!("{e:?}"))?;
    let (width, height) = decoder.dimensions().unwrap();
    std::hint::black_box(pixels);
    Ok(width * height)
}

fn zune_jpeg_luma(bytes: &[u8]) -> Result<usize, String> {
    zune_jpeg(bytes, zune_core::colorspace::ColorSpace::Luma)
}

fn zune_jpeg_rgb(bytes: &[u8]) -> Result<usize, String> {
    zune_jpeg(bytes, zune_core::colorspace::ColorSpace::RGB)
}

fn jpeg_decoder(bytes: &[u8]) -> Result<usize, String> {
    let mut decoder = jpeg_decoder::Decoder::new(Cursor::new(bytes));
    let pixels = decoder.decode().map_err(|e| e.to_string())?;
    let info = decoder.info().unwrap();
    std::hint::black_box(pixels);
    Ok(usize::from(info.width) * usize::from(info.height))
}

fn tiff_whole(bytes: &[u8]) -> Result<usize, String> {
    let mut decoder = tiff::decoder::Decoder::new(Cursor::new(bytes))
        .map_err(|e| e.to_string())?
        .with_limits(tiff::decoder::Limits::unlimited());
    let (width, height) = decoder.dimensions().map_err(|e| e.to_string())?;
    let pixels = decoder.read_image().map_err(|e| e.to_string())?;
    std::hint::black_box(pixels);
    Ok(width as usize * height as usize)
}

fn image_whole(bytes: &[u8]) -> Result<usize, String> {
    let mut reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    reader.no_limits();
    let image = reader.decode().map_err(|e| e.to_string())?;
    Ok(image.width() as usize * image.height() as usize)
}
