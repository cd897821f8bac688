//! What one filtering call computes, and what it gives back.

use image::{GrayImage, ImageBuffer, Luma};

use crate::error::{Error, Result};
use crate::kernel::Kernel;

/// The most kernels one pass computes; the GPU shader's uniform holds this many.
pub const MAX_KERNELS: usize = 8;

/// How the responses of the kernels are combined into one image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Combine {
    /// No combination: one output image per kernel.
    None,
    /// The lesson's edge image from two responses: `min(V + H, 255)`.
    Edge,
    /// The lesson's binary edge image from two responses: 255 where `V + H >= threshold`, else 0
    /// (the lesson uses 255).
    Threshold(u16),
}

/// What the 3×3 windows see beyond the image's edges.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Border {
    /// Nothing: only windows wholly inside the image count, and the output is (W−2)×(H−2), the
    /// lesson's 'valid' convolution.
    #[default]
    Valid,
    /// Zeros (Keras `padding='same'`): the output is W×H.
    Zero,
    /// The nearest edge pixel (OpenCV `BORDER_REPLICATE`): the output is W×H.
    Replicate,
    /// The mirror image without repeating the edge pixel (OpenCV's default
    /// `BORDER_REFLECT_101`, numpy `pad(mode='reflect')`): the output is W×H. Along an axis of
    /// one pixel, that pixel.
    Reflect,
}

impl Border {
    /// Where pixel `index` (from −1 to `len`) of an axis of `len` pixels comes from: an index
    /// inside the image, or `None` for a zero. For [`Border::Valid`], indices outside have no
    /// source.
    pub fn source_index(self, index: i64, len: u32) -> Option<u32> {
        let len = i64::from(len);
        if (0..len).contains(&index) {
            return Some(index as u32);
        }
        let mapped = match self {
            Border::Valid | Border::Zero => return None,
            Border::Replicate => index.clamp(0, len - 1),
            Border::Reflect if len == 1 => 0,
            Border::Reflect if index < 0 => -index,
            Border::Reflect => 2 * (len - 1) - index,
        };
        Some(mapped.clamp(0, len - 1) as u32)
    }

    /// Every border, in the order they are listed to users.
    pub const ALL: [Border; 4] = [
        Border::Valid,
        Border::Zero,
        Border::Replicate,
        Border::Reflect,
    ];

    /// What the border does, in one line for a person (a command line's help, say).
    pub fn summary(self) -> &'static str {
        match self {
            Border::Valid => {
                "Only windows inside the image: the output is two pixels smaller each way (the lesson's)"
            }
            Border::Zero => {
                "Zeros beyond the edges (Keras padding='same'): the output is the image's size"
            }
            Border::Replicate => {
                "The nearest edge pixel (OpenCV BORDER_REPLICATE): the output is the image's size"
            }
            Border::Reflect => {
                "The mirror without repeating the edge (OpenCV's default BORDER_REFLECT_101, numpy \
                 pad mode 'reflect'): the output is the image's size"
            }
        }
    }

    /// The border's name as the command line and the service write it: `valid`, `zero`,
    /// `replicate`, `reflect`.
    pub fn name(self) -> &'static str {
        match self {
            Border::Valid => "valid",
            Border::Zero => "zero",
            Border::Replicate => "replicate",
            Border::Reflect => "reflect",
        }
    }
}

impl std::str::FromStr for Border {
    type Err = Error;

    /// A border by its [`name`](Border::name).
    fn from_str(name: &str) -> Result<Self> {
        Border::ALL
            .into_iter()
            .find(|b| b.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Border::ALL.iter().map(|b| b.name()).collect();
                Error::InvalidOperation(format!(
                    "border '{name}' is not one of {}",
                    names.join(", ")
                ))
            })
    }
}

/// The kernels to apply to an image, how to combine their responses, and what lies beyond its
/// edges; all computed in one pass that reads each input pixel once.
#[derive(Clone, Debug, PartialEq)]
pub struct Operation {
    kernels: Vec<Kernel>,
    combine: Combine,
    keep_responses: bool,
    border: Border,
    /// Each kernel's signed sum is written unclipped, 32 bits a pixel ([`Operation::sums`]).
    sums: bool,
}

impl Operation {
    /// One output image per kernel (1 to [`MAX_KERNELS`] kernels).
    pub fn responses(kernels: Vec<Kernel>) -> Result<Self> {
        Self::new(kernels, Combine::None, true)
    }

    /// The lesson's edge image `min(V + H, 255)` from two kernels (usually
    /// [`Kernel::vertical_lines`] and [`Kernel::horizontal_lines`]).
    pub fn edge(vertical: Kernel, horizontal: Kernel) -> Self {
        Self {
            kernels: vec![vertical, horizontal],
            combine: Combine::Edge,
            keep_responses: false,
            border: Border::Valid,
            sums: false,
        }
    }

    /// Each kernel's sum over its windows, unclipped and signed, as a Keras `Conv2D` (no bias,
    /// no activation) computes it: for a whole-number kernel the exact `i32`, for a fractional
    /// one the `f32` summed in row-major tap order. 1 to [`MAX_KERNELS`] kernels. An engine's
    /// `run_sums` returns them typed; `run_view_into` writes them as 4 bytes a pixel (native
    /// byte order) into each output. `|V| + |H|` of the lesson's two kernels is its Keras
    /// model's output.
    pub fn sums(kernels: Vec<Kernel>) -> Result<Self> {
        Ok(Self {
            sums: true,
            ..Self::responses(kernels)?
        })
    }

    /// Whether this operation writes unclipped sums ([`Operation::sums`]) rather than pixels.
    pub fn is_sums(&self) -> bool {
        self.sums
    }

    /// Bytes of one output pixel: 4 for [`Operation::sums`], 1 otherwise.
    pub fn output_pixel_bytes(&self) -> u32 {
        if self.sums { 4 } else { 1 }
    }

    /// The lesson's binary edge image: 255 where `V + H >= threshold`, else 0 (threshold 0 to 510).
    pub fn threshold(vertical: Kernel, horizontal: Kernel, threshold: u16) -> Result<Self> {
        Self::new(
            vec![vertical, horizontal],
            Combine::Threshold(threshold),
            false,
        )
    }

    /// Any combination, checked: 1 to [`MAX_KERNELS`] kernels, exactly two for
    /// [`Combine::Edge`] and [`Combine::Threshold`], a threshold of at most 510 (the largest
    /// `V + H`). `keep_responses` also returns each kernel's response with a combined image; it is
    /// forced on for [`Combine::None`].
    pub fn new(kernels: Vec<Kernel>, combine: Combine, keep_responses: bool) -> Result<Self> {
        if kernels.is_empty() || kernels.len() > MAX_KERNELS {
            return Err(Error::InvalidOperation(format!(
                "{} kernels given; one pass takes 1 to {MAX_KERNELS}",
                kernels.len()
            )));
        }
        if combine != Combine::None && kernels.len() != 2 {
            return Err(Error::InvalidOperation(format!(
                "an edge or threshold image combines exactly 2 kernels (V and H), {} given",
                kernels.len()
            )));
        }
        if let Combine::Threshold(t) = combine
            && t > 510
        {
            return Err(Error::InvalidOperation(format!(
                "threshold {t} can never be reached: V + H is at most 510"
            )));
        }
        Ok(Self {
            kernels,
            combine,
            keep_responses: keep_responses || combine == Combine::None,
            border: Border::Valid,
            sums: false,
        })
    }

    /// The operation a person asked for in words, as the command line's flags and the service's
    /// query give it: kernels as [`Kernel::parse`] reads them (an unnamed one is called
    /// `kernel1`, `kernel2`, ... by its place), how to combine them, whether to keep each
    /// response beside a combined image, and the border. No kernels with a combination means
    /// the lesson's two line filters. [`Error::NoKernel`] and [`Error::ResponsesWithoutCombine`]
    /// say what is missing or extra, for each front end to word with its own names.
    pub fn from_words<S: AsRef<str>>(
        kernels: &[S],
        combine: Combine,
        keep_responses: bool,
        border: Border,
    ) -> Result<Self> {
        let mut parsed = kernels
            .iter()
            .enumerate()
            .map(|(i, spec)| Kernel::parse(spec.as_ref(), &format!("kernel{}", i + 1)))
            .collect::<Result<Vec<_>>>()?;
        if parsed.is_empty() {
            if combine == Combine::None {
                return Err(Error::NoKernel);
            }
            parsed = vec![Kernel::vertical_lines(), Kernel::horizontal_lines()];
        }
        if keep_responses && combine == Combine::None {
            return Err(Error::ResponsesWithoutCombine);
        }
        Ok(Self::new(parsed, combine, keep_responses)?.with_border(border))
    }

    /// Also return each kernel's response alongside the combined image.
    pub fn with_responses(mut self) -> Self {
        self.keep_responses = true;
        self
    }

    /// The same operation with `border` beyond the image's edges.
    pub fn with_border(mut self, border: Border) -> Self {
        self.border = border;
        self
    }

    /// What lies beyond the image's edges.
    pub fn border(&self) -> Border {
        self.border
    }

    /// The size of each output image for an input of `width × height`: (W−2)×(H−2) for
    /// [`Border::Valid`] (an error below 3×3), W×H for the others (an error for an empty image).
    pub fn output_size(&self, width: u32, height: u32) -> Result<(u32, u32)> {
        if width.checked_mul(self.output_pixel_bytes()).is_none() {
            return Err(Error::InvalidOperation(format!(
                "an image {width} pixels wide is too wide for unclipped sums: a row of them would \
                 pass 4 GiB"
            )));
        }
        match self.border {
            Border::Valid => output_size(width, height),
            _ if width == 0 || height == 0 => Err(Error::ImageTooSmall { width, height }),
            _ => Ok((width, height)),
        }
    }

    /// The kernels, in output order.
    pub fn kernels(&self) -> &[Kernel] {
        &self.kernels
    }

    /// How responses are combined.
    pub fn combine(&self) -> Combine {
        self.combine
    }

    /// Whether each kernel's response is returned.
    pub fn keeps_responses(&self) -> bool {
        self.keep_responses
    }

    /// A name for each image one call writes, in [`FilterOutput`] order: `edge` or
    /// `threshold{T}` for the combined image, then each kept response's kernel name. What
    /// [`output_paths`](crate::pipeline::batch::output_paths) names files by.
    pub fn output_names(&self) -> Vec<String> {
        let combined = match self.combine {
            Combine::None => None,
            Combine::Edge => Some("edge".to_owned()),
            Combine::Threshold(t) => Some(format!("threshold{t}")),
        };
        let responses = self
            .keep_responses
            .then(|| self.kernels.iter().map(|k| k.name().to_owned()));
        combined
            .into_iter()
            .chain(responses.into_iter().flatten())
            .collect()
    }

    /// How many images one call writes: the combined one, if any, then one per kernel if
    /// responses are kept. A GPU target needs room for this many (images in a buffer, array
    /// layers in a texture).
    pub fn output_count(&self) -> u32 {
        let responses = if self.keep_responses {
            self.kernels.len() as u32
        } else {
            0
        };
        u32::from(self.combine != Combine::None) + responses
    }
}

/// The images one call produces, each (H−2)×(W−2).
#[derive(Clone, Debug, PartialEq)]
pub struct FilterOutput {
    /// The edge or threshold image, when the operation combines responses.
    pub combined: Option<GrayImage>,
    /// One response per kernel, in the operation's order, when they were asked for.
    pub responses: Vec<GrayImage>,
}

/// An 8-bit gray image borrowed from whatever holds its pixels (a [`GrayImage`], a numpy array,
/// a caller's frame buffer): rows packed, top to bottom. The backends filter views, so that an
/// image held elsewhere is read where it lies, without a copy.
pub type GrayView<'a> = ImageBuffer<Luma<u8>, &'a [u8]>;

/// `image` as a [`GrayView`], without copying its pixels.
pub fn view(image: &GrayImage) -> GrayView<'_> {
    let (width, height) = image.dimensions();
    ImageBuffer::from_raw(width, height, image.as_raw().as_slice())
        .expect("a GrayImage holds width × height pixels")
}

/// One kernel's unclipped sums ([`Operation::sums`]), row-major.
#[derive(Clone, Debug, PartialEq)]
pub enum SumPlane {
    /// A whole-number kernel's exact sums.
    Integer(Vec<i32>),
    /// A fractional kernel's sums, in `f32` in row-major tap order.
    Float(Vec<f32>),
}

impl SumPlane {
    /// The plane's bytes, 4 a pixel in native byte order: what `run_view_into` writes.
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        match self {
            SumPlane::Integer(sums) => bytemuck::cast_slice_mut(sums),
            SumPlane::Float(sums) => bytemuck::cast_slice_mut(sums),
        }
    }
}

/// What an engine's `run_sums` gives back: one [`SumPlane`] per kernel, each
/// `width × height` (the output size of the operation's border).
#[derive(Clone, Debug, PartialEq)]
pub struct Sums {
    /// Output width.
    pub width: u32,
    /// Output height.
    pub height: u32,
    /// One plane per kernel, in the operation's order.
    pub planes: Vec<SumPlane>,
}

impl Sums {
    /// Zeroed planes for `operation` (an [`Operation::sums`]) on a `width × height` image,
    /// allocated fallibly: `i32` for whole-number kernels, `f32` for fractional ones.
    pub(crate) fn for_image(operation: &Operation, width: u32, height: u32) -> Result<Self> {
        if !operation.is_sums() {
            return Err(Error::InvalidOperation(
                "run_sums takes an Operation::sums".into(),
            ));
        }
        let (width, height) = operation.output_size(width, height)?;
        let pixels = width as usize * height as usize;
        let planes = operation
            .kernels()
            .iter()
            .map(|kernel| {
                Ok(if kernel.is_integer() {
                    SumPlane::Integer(crate::memory::zeroed(pixels, "unclipped sums")?)
                } else {
                    SumPlane::Float(crate::memory::zeroed(pixels, "unclipped sums")?)
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            width,
            height,
            planes,
        })
    }

    /// Each plane's bytes, as `run_view_into` writes them.
    pub(crate) fn planes_as_bytes(&mut self) -> Vec<&mut [u8]> {
        self.planes.iter_mut().map(SumPlane::as_bytes_mut).collect()
    }
}

/// The size of the 'valid' output for an input of `width × height`, or an error when the image
/// is smaller than the kernel.
pub fn output_size(width: u32, height: u32) -> Result<(u32, u32)> {
    if width < 3 || height < 3 {
        return Err(Error::ImageTooSmall { width, height });
    }
    Ok((width - 2, height - 2))
}

/// Checks the caller's output buffers for `run_into`: one per output image
/// ([`Operation::output_count`]), in [`FilterOutput`] order, each exactly
/// `out_width × out_height` bytes.
pub(crate) fn check_outputs(
    operation: &Operation,
    out_width: u32,
    out_height: u32,
    outputs: &[&mut [u8]],
) -> Result<()> {
    let expected =
        out_width as usize * out_height as usize * operation.output_pixel_bytes() as usize;
    if outputs.len() != operation.output_count() as usize {
        return Err(Error::InvalidOperation(format!(
            "{} output buffers for an operation with {} outputs",
            outputs.len(),
            operation.output_count()
        )));
    }
    if let Some((index, output)) = outputs
        .iter()
        .enumerate()
        .find(|(_, output)| output.len() != expected)
    {
        return Err(Error::InvalidOperation(format!(
            "output buffer {index} holds {} bytes; a {out_width}×{out_height} output needs {expected}",
            output.len()
        )));
    }
    Ok(())
}

/// One zeroed plane per output image of `operation`, `out_width × out_height` 8-bit pixels
/// each, allocated fallibly. Unclipped sums are no images: an [`Operation::sums`] is refused.
pub(crate) fn output_planes(
    operation: &Operation,
    out_width: u32,
    out_height: u32,
) -> Result<Vec<Vec<u8>>> {
    if operation.is_sums() {
        return Err(Error::InvalidOperation(
            "unclipped sums are 32 bits a pixel, not images: use run_sums or run_view_into".into(),
        ));
    }
    let pixels = out_width as usize * out_height as usize;
    // One zeroed allocation each, never a clone of one: fresh zeroed pages cost nothing until
    // the filter writes them, where a clone would copy a whole plane.
    (0..operation.output_count())
        .map(|_| crate::memory::zeroed_bytes(pixels, "an output image"))
        .collect()
}

impl FilterOutput {
    /// Wraps planes in the order the shader writes them: the combined plane first when there is
    /// one, then one per kernel if responses were written.
    pub(crate) fn from_planes(
        operation: &Operation,
        width: u32,
        height: u32,
        planes: Vec<Vec<u8>>,
    ) -> Self {
        let mut images = planes.into_iter().map(|plane| {
            GrayImage::from_raw(width, height, plane).expect("plane has width × height pixels")
        });
        let combined = if operation.combine() == Combine::None {
            None
        } else {
            images.next()
        };
        Self {
            combined,
            responses: images.collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_border_reads_back_from_its_name_and_nothing_else_does() {
        for border in Border::ALL {
            assert_eq!(border.name().parse::<Border>().unwrap(), border);
        }
        let error = "mirror".parse::<Border>().unwrap_err().to_string();
        assert!(error.contains("valid, zero, replicate, reflect"), "{error}");
    }

    #[test]
    fn an_operation_in_words_is_the_one_built_by_hand() {
        let edge = Operation::from_words::<&str>(&[], Combine::Edge, false, Border::Reflect);
        assert_eq!(
            edge.unwrap(),
            Operation::edge(Kernel::vertical_lines(), Kernel::horizontal_lines())
                .with_border(Border::Reflect)
        );
        let two = Operation::from_words(
            &["x", "1,0,0;0,0,0;0,0,-1"],
            Combine::None,
            false,
            Border::Valid,
        )
        .unwrap();
        let names: Vec<&str> = two.kernels().iter().map(Kernel::name).collect();
        assert_eq!(names, ["x", "kernel2"]);
        assert!(matches!(
            Operation::from_words::<&str>(&[], Combine::None, false, Border::Valid),
            Err(Error::NoKernel)
        ));
        assert!(matches!(
            Operation::from_words(&["x"], Combine::None, true, Border::Valid),
            Err(Error::ResponsesWithoutCombine)
        ));
        assert!(matches!(
            Operation::from_words(&["1,2"], Combine::None, false, Border::Valid),
            Err(Error::InvalidKernel { .. })
        ));
    }
}
