//! 3×3 kernels: the lesson's filters, the usual named ones, and custom ones parsed from text.
//!
//! Weights are stored row-major and applied without flipping (cross-correlation, as Keras
//! `Conv2D` and OpenCV `filter2D` do): weight `[r][c]` multiplies the pixel `r` rows below and
//! `c` columns right of the window's top-left corner.

use crate::error::{Error, Result};

/// The largest weight magnitude accepted in a whole-number kernel.
///
/// It keeps every sum of nine `u8 × weight` products exact in `i32` (9 · 255 · 65536 < 2³¹), so
/// no kernel can overflow on either backend.
pub const MAX_WEIGHT: f32 = 65536.0;

/// The largest weight magnitude accepted in a kernel with a fractional weight.
///
/// Such kernels are summed in `f32`, and a GPU driver may fuse a multiply and an add where the CPU
/// rounds twice. With weights this small every sum stays below 2²⁰, where the two orders differ
/// by less than 0.3 in total, so after rounding the backends differ by at most 1.
pub const MAX_FRACTIONAL_WEIGHT: f32 = 256.0;

/// A named 3×3 kernel.
#[derive(Clone, Debug, PartialEq)]
pub struct Kernel {
    name: String,
    weights: [f32; 9],
}

/// The kernels known by name: `(name, description, row-major weights)`.
///
/// `vertical` and `horizontal` are the lesson's line filters (Sobel); `x` is the lesson's X-shaped
/// example filter. Orientation follows the lesson: a "vertical" kernel responds to vertical lines.
pub const NAMED_KERNELS: &[(&str, &str, [f32; 9])] = &[
    (
        "vertical",
        "vertical lines (Sobel): 1,0,-1;2,0,-2;1,0,-1",
        [1., 0., -1., 2., 0., -2., 1., 0., -1.],
    ),
    (
        "horizontal",
        "horizontal lines (Sobel): 1,2,1;0,0,0;-1,-2,-1",
        [1., 2., 1., 0., 0., 0., -1., -2., -1.],
    ),
    (
        "x",
        "the lesson's X-shaped filter: 1,0,1;0,1,0;1,0,1",
        [1., 0., 1., 0., 1., 0., 1., 0., 1.],
    ),
    (
        "identity",
        "copies the centre pixel: 0,0,0;0,1,0;0,0,0",
        [0., 0., 0., 0., 1., 0., 0., 0., 0.],
    ),
    ("box-blur", "mean of the 3×3 window: all 1/9", [1. / 9.; 9]),
    (
        "gaussian-blur",
        "Gaussian blur: 1,2,1;2,4,2;1,2,1 / 16",
        [
            1. / 16.,
            2. / 16.,
            1. / 16.,
            2. / 16.,
            4. / 16.,
            2. / 16.,
            1. / 16.,
            2. / 16.,
            1. / 16.,
        ],
    ),
    (
        "sharpen",
        "sharpen: 0,-1,0;-1,5,-1;0,-1,0",
        [0., -1., 0., -1., 5., -1., 0., -1., 0.],
    ),
    (
        "laplacian",
        "Laplacian, 4-neighbour: 0,1,0;1,-4,1;0,1,0",
        [0., 1., 0., 1., -4., 1., 0., 1., 0.],
    ),
    (
        "laplacian-8",
        "Laplacian, 8-neighbour: 1,1,1;1,-8,1;1,1,1",
        [1., 1., 1., 1., -8., 1., 1., 1., 1.],
    ),
    (
        "scharr-vertical",
        "vertical lines (Scharr): 3,0,-3;10,0,-10;3,0,-3",
        [3., 0., -3., 10., 0., -10., 3., 0., -3.],
    ),
    (
        "scharr-horizontal",
        "horizontal lines (Scharr): 3,10,3;0,0,0;-3,-10,-3",
        [3., 10., 3., 0., 0., 0., -3., -10., -3.],
    ),
    (
        "prewitt-vertical",
        "vertical lines (Prewitt): 1,0,-1;1,0,-1;1,0,-1",
        [1., 0., -1., 1., 0., -1., 1., 0., -1.],
    ),
    (
        "prewitt-horizontal",
        "horizontal lines (Prewitt): 1,1,1;0,0,0;-1,-1,-1",
        [1., 1., 1., 0., 0., 0., -1., -1., -1.],
    ),
];

/// Other accepted spellings of named kernels: `(alias, name)`.
pub const KERNEL_ALIASES: &[(&str, &str)] = &[
    ("sobel-vertical", "vertical"),
    ("sobel-v", "vertical"),
    ("sobel-horizontal", "horizontal"),
    ("sobel-h", "horizontal"),
];

impl Kernel {
    /// A kernel from row-major weights, checked: every weight finite and at most [`MAX_WEIGHT`]
    /// in magnitude, or at most [`MAX_FRACTIONAL_WEIGHT`] when any weight has a fractional part.
    pub fn new(name: impl Into<String>, weights: [f32; 9]) -> Result<Self> {
        let name = name.into();
        if let Some(bad) = weights.iter().find(|w| !w.is_finite()) {
            return Err(Error::InvalidKernel {
                spec: name,
                reason: format!("weight {bad} is not a finite number"),
            });
        }
        if let Some(big) = weights.iter().find(|w| w.abs() > MAX_WEIGHT) {
            return Err(Error::InvalidKernel {
                spec: name,
                reason: format!(
                    "weight {big} is larger in magnitude than the maximum {MAX_WEIGHT}"
                ),
            });
        }
        let fractional = weights.iter().any(|w| w.fract() != 0.0);
        if let Some(big) = weights
            .iter()
            .find(|w| fractional && w.abs() > MAX_FRACTIONAL_WEIGHT)
        {
            return Err(Error::InvalidKernel {
                spec: name,
                reason: format!(
                    "weight {big} is too large for a kernel with fractional weights (at most \
                     {MAX_FRACTIONAL_WEIGHT}; whole-number kernels allow up to {MAX_WEIGHT})"
                ),
            });
        }
        Ok(Self { name, weights })
    }

    /// A kernel from 3 rows of 3 weights.
    pub fn from_rows(name: impl Into<String>, rows: [[f32; 3]; 3]) -> Result<Self> {
        Self::new(name, bytemuck::cast(rows))
    }

    /// The lesson's vertical-lines filter (Sobel), `[[1,0,-1],[2,0,-2],[1,0,-1]]`.
    pub fn vertical_lines() -> Self {
        Self::named("vertical").expect("built-in kernel")
    }

    /// The lesson's horizontal-lines filter (Sobel), `[[1,2,1],[0,0,0],[-1,-2,-1]]`.
    pub fn horizontal_lines() -> Self {
        Self::named("horizontal").expect("built-in kernel")
    }

    /// A kernel by name (see [`NAMED_KERNELS`] and [`KERNEL_ALIASES`]), or `None`.
    pub fn named(name: &str) -> Option<Self> {
        let lower = name.to_ascii_lowercase();
        let canonical = KERNEL_ALIASES
            .iter()
            .find(|(alias, _)| *alias == lower)
            .map_or(lower.as_str(), |(_, n)| n);
        NAMED_KERNELS
            .iter()
            .find(|(n, _, _)| *n == canonical)
            .map(|(n, _, weights)| Self {
                name: (*n).to_owned(),
                weights: *weights,
            })
    }

    /// Parses a kernel given on the command line: a name (`vertical`), three rows of three weights
    /// with rows separated by `;` and weights by `,` (`"1,0,-1;2,0,-2;1,0,-1"`), or either form
    /// after `NAME=` to choose the name used for output files (`"edges=1,0,-1;2,0,-2;1,0,-1"`).
    ///
    /// A custom kernel without `NAME=` is called `default_name`.
    pub fn parse(spec: &str, default_name: &str) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidKernel {
            spec: spec.to_owned(),
            reason,
        };
        let (name, body) = match spec.split_once('=') {
            Some((name, body)) => {
                let name = name.trim();
                let valid = !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                if !valid {
                    return Err(invalid(format!(
                        "name '{}' must be letters, digits, '-' or '_'",
                        crate::text::escape(name)
                    )));
                }
                (Some(name), body.trim())
            }
            None => (None, spec.trim()),
        };
        if let Some(kernel) = Self::named(body) {
            return Ok(match name {
                Some(name) => Self {
                    name: name.to_owned(),
                    ..kernel
                },
                None => kernel,
            });
        }
        if !body.contains([',', ';']) {
            let names: Vec<&str> = NAMED_KERNELS.iter().map(|(n, _, _)| *n).collect();
            return Err(invalid(format!(
                "not a known kernel name (known: {}) nor rows like \"1,0,-1;2,0,-2;1,0,-1\"",
                names.join(", ")
            )));
        }
        let rows: Vec<&str> = body.split(';').collect();
        if rows.len() != 3 {
            return Err(invalid(format!(
                "expected 3 rows separated by ';', found {}",
                rows.len()
            )));
        }
        let mut weights = [0f32; 9];
        for (r, row) in rows.iter().enumerate() {
            let cells: Vec<&str> = row.split(',').collect();
            if cells.len() != 3 {
                return Err(invalid(format!(
                    "row {} has {} weights, expected 3",
                    r + 1,
                    cells.len()
                )));
            }
            for (c, cell) in cells.iter().enumerate() {
                let cell = cell.trim();
                weights[r * 3 + c] = cell.parse::<f32>().map_err(|_| {
                    invalid(format!(
                        "'{}' (row {}, column {}) is not a number",
                        crate::text::escape(cell),
                        r + 1,
                        c + 1
                    ))
                })?;
            }
        }
        Self::new(name.unwrap_or(default_name), weights).map_err(|e| match e {
            Error::InvalidKernel { reason, .. } => invalid(reason),
            other => other,
        })
    }

    /// The kernel's name, used in output file names.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The nine weights, row-major.
    pub fn weights(&self) -> &[f32; 9] {
        &self.weights
    }

    /// Whether every weight is a whole number; such kernels are computed exactly in integers.
    pub fn is_integer(&self) -> bool {
        self.weights.iter().all(|w| w.fract() == 0.0)
    }
}

impl std::fmt::Display for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rows: Vec<String> = self
            .weights
            .chunks(3)
            .map(|row| {
                row.iter()
                    .map(|w| w.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect();
        write!(f, "{}={}", self.name, rows.join(";"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rows_names_and_aliases() {
        let k = Kernel::parse("1,0,-1;2,0,-2;1,0,-1", "kernel1").unwrap();
        assert_eq!(k.weights(), Kernel::vertical_lines().weights());
        assert_eq!(k.name(), "kernel1");
        assert_eq!(
            Kernel::parse("Sobel-H", "k").unwrap().weights(),
            Kernel::horizontal_lines().weights()
        );
        let named = Kernel::parse("edges = 1, 2, 1 ; 0,0,0; -1,-2,-1", "k").unwrap();
        assert_eq!(named.name(), "edges");
        assert_eq!(named.weights(), &[1., 2., 1., 0., 0., 0., -1., -2., -1.]);
        assert!(named.is_integer());
        assert_eq!(
            Kernel::parse("blur=gaussian-blur", "k").unwrap().name(),
            "blur"
        );
        assert!(!Kernel::named("box-blur").unwrap().is_integer());
    }

    #[test]
    fn rejects_malformed_kernels_with_reasons() {
        let reason = |spec: &str| match Kernel::parse(spec, "k") {
            Err(Error::InvalidKernel { reason, .. }) => reason,
            other => panic!("{spec:?} gave {other:?}"),
        };
        assert!(reason("1,0,-1;2,0,-2").contains("3 rows"));
        assert!(reason("1,0;2,0,-2;1,0,-1").contains("row 1 has 2"));
        assert!(reason("1,0,-1;2,a,-2;1,0,-1").contains("'a' (row 2, column 2)"));
        assert!(reason("1,0,-1;2,NaN,-2;1,0,-1").contains("not a finite"));
        assert!(reason("1,0,-1;2,inf,-2;1,0,-1").contains("not a finite"));
        assert!(reason("1,0,-1;2,1e9,-2;1,0,-1").contains("larger in magnitude"));
        assert!(
            reason("1,0,-1;2,300,-2;1,0,0.5").contains("too large for a kernel with fractional")
        );
        assert!(Kernel::parse("1,0,-1;2,300,-2;1,0,1", "k").is_ok());
        assert!(reason("sobel").contains("not a known kernel name"));
        assert!(reason("a b=1,0,-1;2,0,-2;1,0,-1").contains("must be letters"));
    }

    #[test]
    fn display_round_trips() {
        for (name, _, _) in NAMED_KERNELS {
            let k = Kernel::named(name).unwrap();
            assert_eq!(Kernel::parse(&k.to_string(), "k").unwrap(), k);
        }
    }
}
