//! A filter request's parameters, named as on the command line.

use std::path::Path;

use crate::{Border, Combine, Kernel, Operation};

/// What a `POST /v1/filter` asks for.
pub(super) struct FilterRequest {
    pub operation: Operation,
    /// The output format, as a file extension.
    pub format: String,
    pub content_type: &'static str,
    /// The operation's kind, for metrics and logs.
    pub kind: &'static str,
    /// The operation as the log line shows it: `edge`, `threshold=255`, `kernel=vertical`...
    pub summary: String,
    /// The body's format when its bytes do not say (`input=tga`).
    pub input_format: Option<image::ImageFormat>,
    /// How a PNG answer is compressed (`compression=fast`).
    pub compression: crate::io::Compression,
    /// Whether the image is turned upright by its TIFF or EXIF orientation (`orient=true`).
    pub orient: bool,
}

/// Parses the query of a filter request; the error names the parameter at fault.
pub(super) fn parse(query: &str) -> Result<FilterRequest, String> {
    let mut kernels = Vec::new();
    let mut edge = false;
    let mut threshold = None;
    let mut border = Border::Valid;
    let mut format = "png".to_owned();
    let mut input_format = None;
    let mut compression = crate::io::Compression::default();
    let mut orient = false;
    let mut responses = false;
    let mut seen: Vec<String> = Vec::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        // Only kernels add up; any other parameter given twice is ambiguous, and a last one
        // silently winning would hide a client's mistake.
        if name != "kernel" {
            if seen.iter().any(|s| *s == name) {
                return Err(format!(
                    "the parameter '{}' is given twice: give it once (only kernel may repeat)",
                    crate::text::escape(&name)
                ));
            }
            seen.push(name.to_string());
        }
        match &*name {
            "kernel" => kernels.push(value.into_owned()),
            "edge" => edge = yes_or_no("edge", &value)?,
            "threshold" => match value.parse::<u16>() {
                Ok(t) if t <= 510 => threshold = Some(t),
                _ => {
                    return Err(format!(
                        "threshold={}: the threshold is a whole number from 0 to 510",
                        crate::text::escape(&value)
                    ));
                }
            },
            "border" => {
                border = value.parse::<Border>().map_err(|_| {
                    let names: Vec<&str> = Border::ALL.iter().map(|b| b.name()).collect();
                    format!(
                        "border={}: the borders are {}",
                        crate::text::escape(&value),
                        names.join(", ")
                    )
                })?;
            }
            "format" => {
                format = value.trim_start_matches('.').to_ascii_lowercase();
                // An extension and nothing else: it names the encoder and what it is counted at.
                if format.is_empty() || !format.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    return Err(format!(
                        "format={}: give an extension such as png or pgm",
                        crate::text::escape(&value)
                    ));
                }
            }
            "input" => {
                input_format = Some(crate::io::readable_format(&value).ok_or_else(|| {
                    format!(
                        "input={}: not a format this server reads ({})",
                        crate::text::escape(&value),
                        crate::io::READABLE_EXTENSIONS.join(", ")
                    )
                })?);
            }
            "compression" => {
                compression = crate::io::Compression::from_name(&value).ok_or_else(|| {
                    let names: Vec<&str> = crate::io::Compression::ALL
                        .iter()
                        .map(|(n, _)| *n)
                        .collect();
                    format!(
                        "compression={}: the choices are {}",
                        crate::text::escape(&value),
                        names.join(", ")
                    )
                })?;
            }
            "responses" => responses = yes_or_no("responses", &value)?,
            "orient" => {
                orient = match value.as_ref() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => {
                        return Err(format!(
                            "orient={}: give true or false",
                            crate::text::escape(&value)
                        ));
                    }
                };
            }
            other => {
                return Err(format!(
                    "unknown parameter '{}' (the parameters are kernel, edge, threshold, responses, border, format, compression, orient and input)",
                    crate::text::escape(other)
                ));
            }
        }
    }
    if edge && threshold.is_some() {
        return Err("edge and threshold exclude each other: ask for one".to_owned());
    }
    if responses {
        return parse_responses(kernels, edge || threshold.is_some(), border, &format, &seen).map(
            |operation| FilterRequest {
                summary: with_border(format!("responses={}", operation.kernels().len()), border),
                operation,
                format: "npz".to_owned(),
                content_type: NPZ_CONTENT_TYPE,
                kind: "responses",
                input_format,
                compression,
                orient,
            },
        );
    }
    let combine = match (edge, threshold) {
        (_, Some(t)) => Combine::Threshold(t),
        (true, None) => Combine::Edge,
        (false, None) => Combine::None,
    };
    let operation =
        Operation::from_words(&kernels, combine, false, border).map_err(|e| match e {
            crate::Error::NoKernel => {
                "no kernel given: add kernel=NAME (for example kernel=vertical), or edge=true"
                    .to_owned()
            }
            other => other.to_string(),
        })?;
    let outputs = operation.output_count();
    if outputs != 1 {
        return Err(format!(
            "the operation makes {outputs} images (one per kernel) and a request yields one: ask for each kernel in a request of its own"
        ));
    }
    if format == "npz" {
        return Err(
            "format=npz: an .npz answer holds the kernels' unclipped sums: ask responses=true"
                .to_owned(),
        );
    }
    let image_format =
        crate::io::output_format(Path::new(&format!("image.{format}"))).map_err(|_| {
            format!(
                "format={}: cannot write that format (png, pgm, bmp, tif, jpg, webp, tga, ...)",
                crate::text::escape(&format)
            )
        })?;
    let (kind, summary) = match combine {
        Combine::Edge => ("edge", "edge".to_owned()),
        Combine::Threshold(t) => ("threshold", format!("threshold={t}")),
        Combine::None => {
            // Clients name their own kernels: the log shows only the names it knows.
            let name = operation.kernels()[0].name();
            let known = Kernel::named(name).is_some();
            (
                "kernel",
                format!("kernel={}", if known { name } else { "custom" }),
            )
        }
    };
    let summary = with_border(summary, border);
    Ok(FilterRequest {
        operation,
        content_type: content_type(image_format, &format),
        format,
        kind,
        summary,
        input_format,
        compression,
        orient,
    })
}

/// A switch's value: empty (present), `true`, `1` or `yes`; or `false`, `0` or `no`.
fn yes_or_no(name: &str, value: &str) -> Result<bool, String> {
    match value {
        "" | "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        other => Err(format!(
            "{name}={}: say {name}=true or {name}=false",
            crate::text::escape(other)
        )),
    }
}

/// The log's summary of an operation, with its border unless 'valid'.
fn with_border(summary: String, border: Border) -> String {
    match border {
        Border::Valid => summary,
        other => format!("{summary},border={}", other.name()),
    }
}

/// The type of a `responses=true` answer: NumPy's `.npz` has no registered one.
pub(super) const NPZ_CONTENT_TYPE: &str = "application/x-npz";

/// `responses=true`: each kernel's unclipped sums, `vertical` and `horizontal` unless named,
/// answered as an `.npz` archive (edge, threshold and other formats are derived from it, not
/// asked with it).
fn parse_responses(
    kernels: Vec<String>,
    combined: bool,
    border: Border,
    format: &str,
    seen: &[String],
) -> Result<Operation, String> {
    if combined {
        return Err(
            "responses=true answers each kernel's sums, from which edge and threshold images follow: ask for responses or for edge/threshold, not both"
                .to_owned(),
        );
    }
    if seen.iter().any(|s| s == "format") && format != "npz" {
        return Err(format!(
            "format={}: responses=true answers an .npz archive (format=npz or no format)",
            crate::text::escape(format)
        ));
    }
    let kernels = if kernels.is_empty() {
        vec!["vertical".to_owned(), "horizontal".to_owned()]
    } else {
        kernels
    };
    let parsed =
        Operation::from_words(&kernels, Combine::None, false, border).map_err(|e| e.to_string())?;
    Operation::sums(parsed.kernels().to_vec())
        .map(|operation| operation.with_border(border))
        .map_err(|e| e.to_string())
}

fn content_type(format: image::ImageFormat, extension: &str) -> &'static str {
    match extension {
        "pgm" => "image/x-portable-graymap",
        "pbm" => "image/x-portable-bitmap",
        "ppm" => "image/x-portable-pixmap",
        "pam" | "pnm" => "image/x-portable-anymap",
        _ => format.to_mime_type(),
    }
}
