//! Video frames through the filter: raw 8-bit gray frames, as `ffmpeg -f rawvideo -pix_fmt gray`
//! writes them, or a YUV4MPEG2 stream of gray (`mono`) frames, as `ffmpeg -f yuv4mpegpipe
//! -pix_fmt gray` writes it. Each frame is filtered as an image of its own, in order, and written
//! the same way it came (Y4M with the output's size in its header).
//!
//! Reading, filtering and writing run at once on three threads (the stage runner every pipeline
//! shares), frames passing between them in a few buffers that go round and round; the engine filters into the same output buffer kind
//! every time ([`Engine::run_into`]), so on the GPU the frame's buffers are reused and the
//! pipeline built once: throughput is that of the slowest stage.
//!
//! ```no_run
//! # fn main() -> gpuconv::Result<()> {
//! use gpuconv::pipeline::frames::{FrameOptions, filter_frames};
//! use gpuconv::{BackendChoice, Engine, Kernel, Operation};
//!
//! let mut engine = Engine::new(BackendChoice::Auto)?;
//! let edge = Operation::edge(Kernel::vertical_lines(), Kernel::horizontal_lines());
//! // A Y4M stream on standard input (its header gives the size), the edge video on standard output.
//! let summary = filter_frames(
//!     &mut engine,
//!     std::io::stdin(),
//!     std::io::stdout(),
//!     &edge,
//!     &FrameOptions::default(),
//! )?;
//! eprintln!("{} frames", summary.frames);
//! # Ok(()) }
//! ```

use std::io::{BufRead, BufReader, Read, Write};

use image::GrayImage;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::memory::zeroed_bytes;
use crate::operation::Operation;

/// How a Y4M stream starts.
const Y4M_MAGIC: &[u8] = b"YUV4MPEG2";

/// The longest header or frame line taken: real ones are tens of bytes.
const MAX_LINE: usize = 4096;

/// Frames in flight between two stages: one being read (or written), one queued.
const FRAMES_IN_FLIGHT: usize = 2;

/// What [`filter_frames`] should do beyond the frames themselves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameOptions {
    /// The frames' size, for raw frames (a Y4M stream's header gives it, and this must then
    /// be `None` or agree).
    pub size: Option<(u32, u32)>,
    /// Whether an incomplete last frame is dropped silently (ffmpeg's own habit) rather than
    /// reported as [`Error::ShortFrame`] once every complete frame is written.
    pub drop_partial: bool,
    /// The most bytes the frames in flight may take: three frames, three filtered ones, a
    /// border's padded copy, and the 1 MiB buffers on each side
    /// ([`default_memory_budget`](crate::io::default_memory_budget) by default). A size that
    /// needs more is [`Error::FramesOverBudget`], before any frame is allocated.
    pub max_memory: u64,
}

impl Default for FrameOptions {
    fn default() -> Self {
        Self {
            size: None,
            drop_partial: false,
            max_memory: crate::io::default_memory_budget(),
        }
    }
}

/// What a finished stream held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameSummary {
    /// Frames filtered and written.
    pub frames: u64,
    /// Width and height of each input frame.
    pub size: (u32, u32),
    /// Whether the stream was Y4M (else raw).
    pub y4m: bool,
    /// Bytes of an incomplete last frame that was dropped (0 when there was none).
    pub dropped_bytes: usize,
}

/// How the frames are framed.
enum Container {
    Raw,
    /// The header's parameters after the magic, width and height left out.
    Y4m {
        parameters: Vec<String>,
    },
}

/// Filters every frame read from `input` with `operation` (which must make one image per frame:
/// one kernel, or an edge or threshold image without responses) and writes the results to
/// `output` in order, in the input's container.
pub fn filter_frames<R: Read + Send, W: Write + Send>(
    engine: &mut Engine,
    input: R,
    output: W,
    operation: &Operation,
    options: &FrameOptions,
) -> Result<FrameSummary> {
    if operation.output_count() != 1 {
        return Err(Error::InvalidOperation(format!(
            "a frame stream carries one image per frame, and this operation makes {}: use one kernel, or an edge or threshold image without the responses",
            operation.output_count()
        )));
    }
    let mut input = BufReader::with_capacity(1 << 20, input);
    // Enough of the stream to tell Y4M from raw; a raw stream's first bytes go back in front.
    let mut head = vec![0; Y4M_MAGIC.len()];
    let got = fill(&mut input, &mut head)?;
    head.truncate(got);
    let (container, (width, height)) = read_header(&head, &mut input, options.size)?;
    if matches!(container, Container::Y4m { .. }) {
        head.clear();
    }
    let input = std::io::Cursor::new(head).chain(input);
    let (out_width, out_height) = operation.output_size(width, height)?;
    // A header can claim any size: refuse what no frame should be before allocating for it.
    let pixels = u64::from(width) * u64::from(height);
    if pixels > crate::io::DEFAULT_MAX_PIXELS {
        return Err(Error::Frames(format!(
            "frames of {width}x{height} are {pixels} pixels, more than the {} a frame may have",
            crate::io::DEFAULT_MAX_PIXELS
        )));
    }
    let frame_bytes = width as usize * height as usize;
    let out_bytes = out_width as usize * out_height as usize;
    let padded = if operation.border() == crate::Border::Valid {
        0
    } else {
        (width as u64 + 2) * (height as u64 + 2)
    };
    let needed = (FRAMES_IN_FLIGHT as u64 + 1) * (frame_bytes as u64 + out_bytes as u64)
        + padded
        + 2 * (1 << 20);
    if needed > options.max_memory {
        return Err(Error::FramesOverBudget {
            width,
            height,
            needed,
            budget: options.max_memory,
        });
    }
    let y4m = matches!(container, Container::Y4m { .. });

    // Buffers go round: one frame being read, one queued, one being filtered; the same for the
    // filtered frames. Allocated fallibly: a frame size the machine cannot hold is an error.
    let buffers = |bytes: usize, what: &str| -> Result<Vec<Vec<u8>>> {
        (0..=FRAMES_IN_FLIGHT)
            .map(|_| zeroed_bytes(bytes, what))
            .collect()
    };
    let inputs = buffers(frame_bytes, "a frame buffer")?;
    let outputs = vec![buffers(out_bytes, "a filtered frame buffer")?];

    let kind = container_kind(y4m);
    let mut input = input;
    let mut leftover = 0;
    let mut read = |frame: &mut Vec<u8>| -> Result<bool> {
        match read_frame(&mut input, &kind, frame)? {
            Frame::Whole => Ok(true),
            Frame::End { leftover: left } => {
                leftover = left;
                Ok(false)
            }
        }
    };
    let mut count = 0;
    let mut filter = |frame: Vec<u8>, filtered: &mut [Vec<u8>]| -> Result<Vec<u8>> {
        let image = GrayImage::from_raw(width, height, frame).expect("whole frames");
        engine.run_into(&image, operation, &mut [&mut filtered[0][..]])?;
        count += 1;
        Ok(image.into_raw())
    };
    let writing = |source| Error::FrameIo {
        what: "writing the frames",
        source,
    };
    let mut output = std::io::BufWriter::with_capacity(1 << 20, output);
    if let Container::Y4m { parameters } = &container {
        output
            .write_all(&y4m_header(out_width, out_height, parameters))
            .map_err(writing)?;
    }
    let mut write = |frame: &[u8]| -> Result<()> {
        if y4m {
            output.write_all(b"FRAME\n").map_err(writing)?;
        }
        output.write_all(frame).map_err(writing)?;
        // Written frames go out at once, so a pipeline downstream sees them without delay.
        output.flush().map_err(writing)
    };
    crate::stages::run(inputs, outputs, &mut read, &mut filter, vec![&mut write])?;
    output.flush().map_err(writing)?;
    if leftover > 0 && !options.drop_partial {
        return Err(Error::ShortFrame {
            frames: count,
            leftover,
            frame_bytes,
        });
    }
    Ok(FrameSummary {
        frames: count,
        size: (width, height),
        y4m,
        dropped_bytes: leftover,
    })
}

/// Raw or Y4M, for the reader thread.
#[derive(Clone, Copy)]
enum Kind {
    Raw,
    Y4m,
}

fn container_kind(y4m: bool) -> Kind {
    if y4m { Kind::Y4m } else { Kind::Raw }
}

/// The container and frame size: a Y4M header when the stream's first bytes, `head`, start one
/// (the rest of its line is read from `input`), else raw frames of `size`.
fn read_header(
    head: &[u8],
    input: &mut impl BufRead,
    size: Option<(u32, u32)>,
) -> Result<(Container, (u32, u32))> {
    if head != Y4M_MAGIC {
        let Some(size) = size else {
            return Err(Error::Frames(
                "raw frames need their size (WxH); only a Y4M stream says it in its header"
                    .to_owned(),
            ));
        };
        return Ok((Container::Raw, size));
    }
    let mut line =
        read_line(input)?.ok_or_else(|| Error::Frames("the Y4M header is cut short".to_owned()))?;
    // A header written with CRLF (by hand, or on Windows) is the same header.
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    let text = String::from_utf8_lossy(&line);
    let mut width = None;
    let mut height = None;
    let mut colour = None;
    let mut parameters = Vec::new();
    for token in text.split(' ').skip(1).filter(|t| !t.is_empty()) {
        let number = |t: &str| t[1..].parse::<u32>().ok();
        match token.as_bytes()[0] {
            b'W' => width = number(token),
            b'H' => height = number(token),
            b'C' => {
                colour = Some(token[1..].to_owned());
                parameters.push(token.to_owned());
            }
            _ => parameters.push(token.to_owned()),
        }
    }
    let (Some(width), Some(height)) = (width, height) else {
        return Err(Error::Frames(format!(
            "the Y4M header '{}' gives no size",
            crate::text::escape_bytes(&line)
        )));
    };
    let colour = colour.unwrap_or_else(|| "420jpeg".to_owned());
    if colour != "mono" {
        return Err(Error::Frames(format!(
            "the Y4M frames are in colour space {}, and gpuconv takes gray ones: add -pix_fmt gray before -f yuv4mpegpipe in ffmpeg",
            crate::text::escape(&colour)
        )));
    }
    if let Some(given) = size
        && given != (width, height)
    {
        return Err(Error::Frames(format!(
            "the size given, {}x{}, is not the Y4M header's {width}x{height}",
            given.0, given.1
        )));
    }
    Ok((Container::Y4m { parameters }, (width, height)))
}

/// One line without its newline; `None` at the end of the stream.
fn read_line(input: &mut impl BufRead) -> Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    let read = input
        .by_ref()
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut line)
        .map_err(|source| Error::FrameIo {
            what: "reading the frames",
            source,
        })?;
    if read == 0 {
        return Ok(None);
    }
    if line.pop() != Some(b'\n') {
        return Err(Error::Frames(format!(
            "a Y4M line runs past {MAX_LINE} bytes or the stream ends inside it"
        )));
    }
    Ok(Some(line))
}

/// What [`read_frame`] found.
enum Frame {
    /// A whole frame, in the buffer.
    Whole,
    /// The end of the stream, after `leftover` bytes of an incomplete frame, a Y4M FRAME line
    /// included (0 when the stream ended between frames).
    End { leftover: usize },
}

/// Reads the next frame (its Y4M FRAME line first) into `frame`, which is already its size.
fn read_frame(input: &mut impl BufRead, kind: &Kind, frame: &mut [u8]) -> Result<Frame> {
    let mut frame_line = 0;
    if let Kind::Y4m = kind {
        match read_line(input)? {
            None => return Ok(Frame::End { leftover: 0 }),
            Some(line) if line.starts_with(b"FRAME") => frame_line = line.len() + 1,
            Some(line) => {
                return Err(Error::Frames(format!(
                    "expected a Y4M FRAME line, found '{}'",
                    crate::text::escape_bytes(&line[..line.len().min(40)])
                )));
            }
        }
    }
    let filled = fill(input, frame)?;
    if filled < frame.len() {
        return Ok(Frame::End {
            leftover: filled + frame_line,
        });
    }
    Ok(Frame::Whole)
}

/// Reads until `buffer` is full or the stream ends; how many bytes came.
fn fill(input: &mut impl Read, buffer: &mut [u8]) -> Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match input.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(Error::FrameIo {
                    what: "reading the frames",
                    source,
                });
            }
        }
    }
    Ok(filled)
}

/// The output stream's Y4M header: the input's parameters with the output's size.
fn y4m_header(width: u32, height: u32, parameters: &[String]) -> Vec<u8> {
    let mut header = format!("YUV4MPEG2 W{width} H{height}");
    for parameter in parameters {
        header.push(' ');
        header.push_str(parameter);
    }
    header.push('\n');
    header.into_bytes()
}
