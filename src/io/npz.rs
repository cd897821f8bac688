//! NumPy's `.npz` archive, written in place: a ZIP file whose members are `.npy` arrays,
//! stored uncompressed, as `numpy.savez` writes it.
//!
//! Written by hand rather than with the `zip` crate because the archive is laid out before
//! anything is computed: the filter writes each array's values straight into its place in the
//! one buffer that becomes the answer, and only the CRCs are filled in afterwards. A ZIP writer
//! takes bytes through `Write`, which would hold every array twice. Each array's values start
//! at a multiple of 64 bytes from the archive's start (the `.npy` header is padded with spaces,
//! as the format allows), so that a reader can view them in place as 32- or 64-bit numbers.
//!
//! Formats: <https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html> and
//! PKWARE's APPNOTE (local file headers, central directory, end record; no ZIP64, so an
//! archive is at most 4 GiB).

use std::ops::Range;

use crate::error::{Error, Result};

/// The number type of an array's elements, as `.npy` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    /// `uint8`.
    U8,
    /// `int32`, in this machine's byte order.
    I32,
    /// `float32`, in this machine's byte order.
    F32,
    /// `float64`, in this machine's byte order.
    F64,
}

impl Dtype {
    /// Bytes per element.
    pub fn bytes(self) -> usize {
        match self {
            Dtype::U8 => 1,
            Dtype::I32 | Dtype::F32 => 4,
            Dtype::F64 => 8,
        }
    }

    /// The `descr` of a `.npy` header: byte order, kind, size.
    fn descr(self) -> &'static str {
        let little = cfg!(target_endian = "little");
        match (self, little) {
            (Dtype::U8, _) => "|u1",
            (Dtype::I32, true) => "<i4",
            (Dtype::I32, false) => ">i4",
            (Dtype::F32, true) => "<f4",
            (Dtype::F32, false) => ">f4",
            (Dtype::F64, true) => "<f8",
            (Dtype::F64, false) => ">f8",
        }
    }
}

/// One array of an archive: its name (the member is `{name}.npy`), element type and shape.
#[derive(Clone, Debug)]
pub struct NpyArray {
    /// The key `numpy.load` gives it: ASCII letters, digits and `_`.
    pub name: &'static str,
    /// Element type.
    pub dtype: Dtype,
    /// Shape, C order.
    pub shape: Vec<usize>,
}

/// Where each array's values lie in an archive's bytes.
struct Member {
    /// Offset of its local file header.
    header: usize,
    /// Its `.npy` file (header and values) within the archive.
    file: Range<usize>,
    /// Its values within the archive.
    values: Range<usize>,
    /// Offset of its central directory entry.
    central: usize,
}

/// A member placed, with the `.npy` header written before its values.
struct Planned {
    member: Member,
    npy_header: Vec<u8>,
}

/// An archive laid out and zeroed, its values to be written with [`values_mut`](Self::values_mut)
/// before [`finish`](Self::finish) seals it.
pub struct Npz {
    bytes: Vec<u8>,
    members: Vec<Member>,
}

const LOCAL_HEADER: usize = 30;
const CENTRAL_HEADER: usize = 46;
const END_RECORD: usize = 22;
/// Where each array's values are aligned, from the archive's start.
const ALIGN: usize = 64;

impl Npz {
    /// The archive's size for `arrays`, and whether it can be written (at most 4 GiB, no more
    /// than 65535 members): what a caller counts against a memory budget before allocating.
    pub fn size(arrays: &[NpyArray]) -> Result<usize> {
        Ok(Self::plan(arrays)?.1)
    }

    /// Lays out `arrays`, allocating the archive fallibly (zeroed values).
    pub fn new(arrays: &[NpyArray]) -> Result<Self> {
        let (plan, total) = Self::plan(arrays)?;
        let mut bytes: Vec<u8> = crate::memory::zeroed(total, "an .npz archive")?;
        for (array, Planned { member, npy_header }) in arrays.iter().zip(&plan) {
            let name = format!("{}.npy", array.name);
            let mut at = member.header;
            put(&mut bytes, &mut at, &0x0403_4b50u32.to_le_bytes());
            put(
                &mut bytes,
                &mut at,
                &entry_fields(name.len(), member.file.len()),
            );
            put(&mut bytes, &mut at, name.as_bytes());
            put(&mut bytes, &mut at, npy_header);
            debug_assert_eq!(at, member.values.start);
            // The central directory: each member again, with where its local header is.
            let mut at = member.central;
            put(&mut bytes, &mut at, &0x0201_4b50u32.to_le_bytes());
            // Made by and needed: version 2.0, no host system in particular.
            put(&mut bytes, &mut at, &20u16.to_le_bytes());
            put(
                &mut bytes,
                &mut at,
                &entry_fields(name.len(), member.file.len()),
            );
            // Comment length, disk number, internal and external attributes.
            put(&mut bytes, &mut at, &[0; 10]);
            put(&mut bytes, &mut at, &(member.header as u32).to_le_bytes());
            put(&mut bytes, &mut at, name.as_bytes());
        }
        let members: Vec<Member> = plan.into_iter().map(|planned| planned.member).collect();
        let end = total - END_RECORD;
        let directory = members.first().map_or(end, |first| first.central);
        let count = (members.len() as u16).to_le_bytes();
        let mut at = end;
        put(&mut bytes, &mut at, &0x0605_4b50u32.to_le_bytes());
        put(&mut bytes, &mut at, &[0; 4]);
        put(&mut bytes, &mut at, &count);
        put(&mut bytes, &mut at, &count);
        put(
            &mut bytes,
            &mut at,
            &((end - directory) as u32).to_le_bytes(),
        );
        put(&mut bytes, &mut at, &(directory as u32).to_le_bytes());
        Ok(Self { bytes, members })
    }

    /// Each array's values, in the order given, as bytes in this machine's byte order.
    pub fn values_mut(&mut self) -> Vec<&mut [u8]> {
        let mut rest: &mut [u8] = &mut self.bytes;
        let mut taken = 0;
        let mut slices = Vec::with_capacity(self.members.len());
        for member in &self.members {
            let (_, tail) = std::mem::take(&mut rest).split_at_mut(member.values.start - taken);
            let (values, tail) = tail.split_at_mut(member.values.len());
            slices.push(values);
            taken = member.values.end;
            rest = tail;
        }
        slices
    }

    /// The archive's bytes, each member's CRC-32 filled in.
    pub fn finish(mut self) -> Vec<u8> {
        for member in &self.members {
            let crc = crc32fast::hash(&self.bytes[member.file.clone()]).to_le_bytes();
            // The CRC sits 14 bytes into a local header and 16 into a central one.
            self.bytes[member.header + 14..member.header + 18].copy_from_slice(&crc);
            self.bytes[member.central + 16..member.central + 20].copy_from_slice(&crc);
        }
        self.bytes
    }

    /// Where each member lies, with its `.npy` header; and the archive's length.
    fn plan(arrays: &[NpyArray]) -> Result<(Vec<Planned>, usize)> {
        let too_large = |reason: String| Error::Write {
            path: "archive.npz".into(),
            reason,
        };
        if arrays.len() > usize::from(u16::MAX) {
            return Err(too_large(
                "an .npz archive holds at most 65535 arrays".into(),
            ));
        }
        let mut at = 0usize;
        let mut plan = Vec::with_capacity(arrays.len());
        for array in arrays {
            debug_assert!(
                array
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            );
            let file = at + LOCAL_HEADER + array.name.len() + ".npy".len();
            let npy_header = npy_header(array, file);
            let values = array
                .shape
                .iter()
                .try_fold(array.dtype.bytes(), |n, &d| n.checked_mul(d))
                .ok_or_else(|| too_large("the arrays are too large to address".into()))?;
            let start = file + npy_header.len();
            let end = start.saturating_add(values);
            let member = Member {
                header: at,
                file: file..end,
                values: start..end,
                // Placed once every member's length is known.
                central: 0,
            };
            plan.push(Planned { member, npy_header });
            at = end;
        }
        for (array, Planned { member, .. }) in arrays.iter().zip(&mut plan) {
            member.central = at;
            at += CENTRAL_HEADER + array.name.len() + ".npy".len();
        }
        let total = at + END_RECORD;
        if total > u32::MAX as usize {
            return Err(too_large(format!(
                "the archive would be {}, and an .npz answer is at most 4 GiB (no ZIP64)",
                crate::units::format_bytes(total as u64)
            )));
        }
        Ok((plan, total))
    }
}

/// The fields a local header and a central entry share, from "version needed" to the extra
/// field's length: stored, no flags.
fn entry_fields(name: usize, size: usize) -> [u8; 26] {
    let mut fields = [0u8; 26];
    fields[0..2].copy_from_slice(&20u16.to_le_bytes());
    // Flags, method (0: stored), time: zero; the date 1980-01-01, the earliest DOS date (a
    // zero date is day 0 of month 0, which some tools call invalid); CRC filled in later.
    fields[8..10].copy_from_slice(&0x0021u16.to_le_bytes());
    fields[14..18].copy_from_slice(&(size as u32).to_le_bytes());
    fields[18..22].copy_from_slice(&(size as u32).to_le_bytes());
    fields[22..24].copy_from_slice(&(name as u16).to_le_bytes());
    fields
}

/// A version 1.0 `.npy` header for `array` whose file starts at `file` in the archive, padded
/// with spaces so that the values start at a multiple of [`ALIGN`] from the archive's start.
fn npy_header(array: &NpyArray, file: usize) -> Vec<u8> {
    let shape = match &array.shape[..] {
        [one] => format!("({one},)"),
        dims => format!(
            "({})",
            dims.iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let dict = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {shape}, }}",
        array.dtype.descr()
    );
    // Magic (6), version (2), length (2), the dict, at least its closing newline.
    let unpadded = 10 + dict.len() + 1;
    let padding = (ALIGN - (file + unpadded) % ALIGN) % ALIGN;
    let length = (dict.len() + padding + 1) as u16;
    let mut header = Vec::with_capacity(unpadded + padding);
    header.extend_from_slice(b"\x93NUMPY\x01\x00");
    header.extend_from_slice(&length.to_le_bytes());
    header.extend_from_slice(dict.as_bytes());
    header.extend(std::iter::repeat_n(b' ', padding));
    header.push(b'\n');
    header
}

fn put(bytes: &mut [u8], at: &mut usize, data: &[u8]) {
    bytes[*at..*at + data.len()].copy_from_slice(data);
    *at += data.len();
}
