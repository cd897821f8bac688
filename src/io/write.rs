//! Writing results without ever leaving a half-written file, even when the process is stopped.

use std::fs::File;
use std::io::{BufWriter, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use image::{GrayImage, ImageBuffer, ImageFormat, Luma};
use tempfile::NamedTempFile;

use super::png_bands::{Compression, PngRows};
use crate::error::{Error, Result};

/// The output files being written right now, under their temporary names.
struct PartialFiles {
    paths: Vec<PathBuf>,
    /// Set once [`remove_partial_outputs`] has run: no new file is started after it.
    closed: bool,
}

static PARTIAL_FILES: Mutex<PartialFiles> = Mutex::new(PartialFiles {
    paths: Vec::new(),
    closed: false,
});

fn partial_files() -> std::sync::MutexGuard<'static, PartialFiles> {
    // A writer that panicked leaves the list as consistent as it was: keep using it.
    PARTIAL_FILES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Deletes every output file [`save_gray`] is writing at this moment (its hidden
/// `.gpuconv-*.part` file beside the destination) and returns how many it deleted. For a signal
/// handler that is about to end the process: finished outputs stay, no partial one is left
/// behind, and a [`save_gray`] that starts or finishes a file after this call waits for the
/// end of the process instead.
pub fn remove_partial_outputs() -> usize {
    let mut partial = partial_files();
    partial.closed = true;
    let paths = std::mem::take(&mut partial.paths);
    paths
        .iter()
        .filter(|path| std::fs::remove_file(path).is_ok())
        .count()
}

/// Waits for the end of the process that [`remove_partial_outputs`] announced, rather than
/// report a failure of its own on the way out.
fn stop_here() -> ! {
    loop {
        std::thread::park();
    }
}

/// The format an output path's extension asks for, or an error when gpuconv cannot write it.
/// `.pgm` and `.pnm` are binary graymaps (P5), `.pbm` a binary bitmap (P4: only for images
/// that are black and white, see [`is_bitmap_path`]), `.ppm` a pixmap (P6, gray in each
/// channel), `.pam` a PAM with tuple type `GRAYSCALE`.
pub fn output_format(path: &Path) -> Result<ImageFormat> {
    let unsupported = || Error::UnsupportedOutputFormat {
        path: path.to_owned(),
    };
    let format = ImageFormat::from_path(path).map_err(|_| unsupported())?;
    let writable = [
        ImageFormat::Png,
        ImageFormat::Pnm,
        ImageFormat::Bmp,
        ImageFormat::Tiff,
        ImageFormat::Jpeg,
        ImageFormat::WebP,
        ImageFormat::Tga,
    ];
    if writable.contains(&format) {
        Ok(format)
    } else {
        Err(unsupported())
    }
}

/// Whether `path` names a PBM file, which holds only black and white: [`save_gray`] writes
/// 0 as black and 255 as white there, and refuses images with any other value.
pub fn is_bitmap_path(path: &Path) -> bool {
    extension(path) == "pbm"
}

/// A path's extension in lower case (empty when it has none).
pub(crate) fn extension(path: &Path) -> String {
    path.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default()
}

/// The folder `path` will be written into, checked to exist (`.` for a bare file name).
pub fn check_output_folder(path: &Path) -> Result<&Path> {
    let write_error = |reason: String| Error::Write {
        path: path.to_owned(),
        reason,
    };
    if path.file_name().is_none() {
        return Err(write_error(
            "that names a folder, not a file (name an output file, or end -o with '/' for a folder)"
                .to_owned(),
        ));
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    // Outputs are renamed into place: that would replace a device, a pipe or a socket
    // (`-o /dev/null` as root) with a regular file.
    if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
        return Err(write_error(
            "it exists and is not a regular file (gpuconv replaces outputs whole)".to_owned(),
        ));
    }
    match std::fs::metadata(dir) {
        Ok(metadata) if metadata.is_dir() => Ok(dir),
        Ok(_) => Err(write_error(format!(
            "'{}' is not a folder",
            crate::text::escape_path(dir)
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(write_error(format!(
            "'{}' does not exist",
            crate::text::escape_path(dir)
        ))),
        Err(e) => Err(write_error(format!(
            "'{}': {e}",
            crate::text::escape_path(dir)
        ))),
    }
}

/// Writes `image` to `path` in the format its extension names. The file is written beside its
/// destination under a temporary name and renamed into place only once complete, so a failure
/// never leaves a partial or empty file behind, and an existing file is replaced atomically;
/// [`remove_partial_outputs`] deletes the temporary file if the process is stopped meanwhile.
pub fn save_gray(image: &GrayImage, path: &Path) -> Result<()> {
    save_gray_with(image, path, Compression::default())
}

/// [`save_gray`], compressed as `compression` says.
pub fn save_gray_with(image: &GrayImage, path: &Path, compression: Compression) -> Result<()> {
    write_partial(image, path, compression)?.commit()
}

/// Saves a 16-bit gray image as PNG, PGM (`.pgm`, `.pnm`: P5 with maxval 65535) or TIFF, by
/// `path`'s extension, through a temporary file renamed into place.
pub fn save_gray16(image: &ImageBuffer<Luma<u16>, Vec<u16>>, path: &Path) -> Result<()> {
    let write_error = |reason: String| Error::Write {
        path: path.to_owned(),
        reason,
    };
    let format = match (output_format(path)?, extension(path).as_str()) {
        (ImageFormat::Png, _) => ImageFormat::Png,
        (ImageFormat::Pnm, "pgm" | "pnm") => ImageFormat::Pnm,
        (ImageFormat::Tiff, _) => ImageFormat::Tiff,
        _ => {
            return Err(write_error(
                "a 16-bit image is written as PNG, PGM or TIFF (.png, .pgm, .tif)".into(),
            ));
        }
    };
    let partial = PartialFile::create(path)?;
    let mut writer = BufWriter::new(partial.file());
    if format == ImageFormat::Pnm {
        // Written here: image's PNM encoder writes 16-bit gray only as PAM (P7). A 16-bit PGM
        // is its header, then the samples big-endian.
        let header = format!("P5\n{} {}\n65535\n", image.width(), image.height());
        writer
            .write_all(header.as_bytes())
            .and_then(|()| {
                image.as_raw().chunks(64 * 1024).try_for_each(|samples| {
                    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_be_bytes()).collect();
                    writer.write_all(&bytes)
                })
            })
            .map_err(|e| write_error(e.to_string()))?;
    } else {
        image
            .write_to(&mut writer, format)
            .map_err(|e| write_error(e.to_string()))?;
    }
    writer.flush().map_err(|e| write_error(e.to_string()))?;
    drop(writer);
    partial.commit()
}

/// [`save_gray`] up to the rename: the complete file under its temporary name, for a caller
/// that puts several outputs in place only once all of them are written.
pub(crate) fn write_partial(
    image: &GrayImage,
    path: &Path,
    compression: Compression,
) -> Result<PartialFile> {
    let format = output_format(path)?;
    let write_error = |reason: String| Error::Write {
        path: path.to_owned(),
        reason,
    };
    if is_bitmap_path(path) && image.as_raw().iter().any(|&v| v != 0 && v != 255) {
        return Err(write_error(
            "a .pbm file holds only black and white, and this image has other values \
             (write .pgm, or make the image binary with a threshold)"
                .to_owned(),
        ));
    }
    let partial = PartialFile::create(path)?;
    let mut writer = BufWriter::new(partial.file());
    encode(image, format, &extension(path), compression, &mut writer).map_err(write_error)?;
    writer.flush().map_err(|e| write_error(e.to_string()))?;
    drop(writer);
    Ok(partial)
}

/// `image` encoded in the format a file named `*.extension` gets from [`save_gray`] (`png`,
/// `pgm`, `tif`, ...), in memory: for writing to a pipe, which the encoders of some formats
/// cannot seek in.
pub fn encode_gray(image: &GrayImage, format_extension: &str) -> Result<Vec<u8>> {
    encode_gray_with(image, format_extension, Compression::default())
}

/// [`encode_gray`], compressed as `compression` says.
pub fn encode_gray_with(
    image: &GrayImage,
    format_extension: &str,
    compression: Compression,
) -> Result<Vec<u8>> {
    let name = PathBuf::from(format!(
        "standard output.{}",
        format_extension.trim_start_matches('.')
    ));
    let format = output_format(&name)?;
    if is_bitmap_path(&name) && image.as_raw().iter().any(|&v| v != 0 && v != 255) {
        return Err(Error::Write {
            path: name,
            reason: "a PBM holds only black and white, and this image has other values".to_owned(),
        });
    }
    let mut bytes = std::io::Cursor::new(Vec::new());
    encode(image, format, &extension(&name), compression, &mut bytes)
        .map_err(|reason| Error::Write { path: name, reason })?;
    Ok(bytes.into_inner())
}

/// An output file being written: a hidden temporary file beside its destination, listed among
/// the partial files (which [`remove_partial_outputs`] deletes) until [`commit`](Self::commit)
/// renames it into place. Dropped uncommitted, it is deleted.
pub(crate) struct PartialFile {
    temp: Option<NamedTempFile>,
    destination: PathBuf,
}

impl PartialFile {
    /// A new temporary file for `destination`, whose folder must exist.
    pub(crate) fn create(destination: &Path) -> Result<Self> {
        let write_error = |reason: String| Error::Write {
            path: destination.to_owned(),
            reason,
        };
        let dir = check_output_folder(destination)?;
        let mut partial = partial_files();
        if partial.closed {
            stop_here();
        }
        let mut builder = tempfile::Builder::new();
        builder.prefix(".gpuconv-").suffix(".part");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o644));
        }
        let temp = builder
            .tempfile_in(dir)
            .map_err(|e| write_error(e.to_string()))?;
        partial.paths.push(temp.path().to_owned());
        Ok(Self {
            temp: Some(temp),
            destination: destination.to_owned(),
        })
    }

    /// The temporary file, to write into.
    pub(crate) fn file(&self) -> &File {
        self.temp.as_ref().expect("not yet committed").as_file()
    }

    /// Renames the complete file into place.
    pub(crate) fn commit(mut self) -> Result<()> {
        let temp = self.temp.take().expect("committed once");
        let mut partial = partial_files();
        let temp_path = temp.path().to_owned();
        partial.paths.retain(|p| *p != temp_path);
        if partial.closed {
            // Already deleted by `remove_partial_outputs`, whose caller is ending the process.
            drop(partial);
            stop_here();
        }
        temp.persist(&self.destination)
            .map(drop)
            .map_err(|e| Error::Write {
                path: self.destination.clone(),
                reason: e.error.to_string(),
            })
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if let Some(temp) = self.temp.take() {
            // Deleted under the lock, so that a signal handler either deletes it or sees it
            // gone.
            let mut partial = partial_files();
            partial.paths.retain(|p| p != temp.path());
            drop(temp);
        }
    }
}

fn encode<W: Write + Seek>(
    image: &GrayImage,
    format: ImageFormat,
    extension: &str,
    compression: Compression,
    writer: &mut W,
) -> std::result::Result<(), String> {
    use image::codecs::pnm::{PnmEncoder, PnmSubtype, SampleEncoding};
    match format {
        ImageFormat::Png => {
            // Band by band on every core, IDAT chunk by chunk. The caller names the file.
            let reason = |error: Error| match error {
                Error::Write { reason, .. } => reason,
                other => other.to_string(),
            };
            let mut png = PngRows::new(
                writer,
                image.width(),
                image.height(),
                compression,
                Path::new(""),
            )
            .map_err(reason)?;
            png.write_rows(image.as_raw()).map_err(reason)?;
            png.finish().map_err(reason)
        }
        ImageFormat::Pnm => {
            // Each extension gets the kind of file it names: P4 for .pbm, P6 for .ppm, PAM for
            // .pam; .pgm and .pnm get P5, which every reader knows. P4 and P6 are written row
            // by row here: the crate's encoder would want a converted copy of the image.
            let result = match extension {
                "pbm" => return write_bitmap(image, writer),
                "ppm" => return write_pixmap(image, writer),
                "pam" => image.write_with_encoder(
                    PnmEncoder::new(writer).with_subtype(PnmSubtype::ArbitraryMap),
                ),
                _ => image.write_with_encoder(
                    PnmEncoder::new(writer)
                        .with_subtype(PnmSubtype::Graymap(SampleEncoding::Binary)),
                ),
            };
            result.map_err(|e| e.to_string())
        }
        other => image.write_to(writer, other).map_err(|e| e.to_string()),
    }
}

/// A binary PBM (P4): a bit a pixel, rows padded to bytes, 1 for black (0), 0 for white (255).
fn write_bitmap(image: &GrayImage, writer: &mut impl Write) -> std::result::Result<(), String> {
    let (width, height) = image.dimensions();
    let error = |e: std::io::Error| e.to_string();
    write!(writer, "P4\n{width} {height}\n").map_err(error)?;
    let mut packed = Vec::with_capacity(width.div_ceil(8) as usize);
    for row in image.as_raw().chunks_exact(width as usize) {
        packed.clear();
        packed.extend(row.chunks(8).map(|bits| {
            bits.iter()
                .enumerate()
                .filter(|&(_, &v)| v == 0)
                .fold(0u8, |byte, (i, _)| byte | (0x80 >> i))
        }));
        writer.write_all(&packed).map_err(error)?;
    }
    Ok(())
}

/// How many output-sized buffers encoding a gray image in memory as `*.format_extension` holds
/// at once, the encoded file included: three for PPM (a pixel's gray in each channel), five for
/// WebP (its encoder works on four bytes a pixel), one for the others.
pub fn encoded_images_per_output(format_extension: &str) -> u64 {
    match format_extension
        .trim_start_matches('.')
        .to_ascii_lowercase()
        .as_str()
    {
        "ppm" => 3,
        "webp" => 5,
        _ => 1,
    }
}

/// A binary PPM (P6) with the gray in each channel.
fn write_pixmap(image: &GrayImage, writer: &mut impl Write) -> std::result::Result<(), String> {
    let (width, height) = image.dimensions();
    let error = |e: std::io::Error| e.to_string();
    write!(writer, "P6\n{width} {height}\n255\n").map_err(error)?;
    let mut rgb = Vec::with_capacity(3 * width as usize);
    for row in image.as_raw().chunks_exact(width as usize) {
        rgb.clear();
        rgb.extend(row.iter().flat_map(|&v| [v, v, v]));
        writer.write_all(&rgb).map_err(error)?;
    }
    Ok(())
}
