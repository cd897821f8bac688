//! Deflate for PNG image data, a band of rows at a time, so that bands compressed on different
//! cores join into one zlib stream: each band is a deflate block of its own, and every band but
//! the last ends with an empty stored block (a "sync flush"), which leaves the stream on a byte
//! boundary where the next band's block can begin. The stream's Adler-32 is combined from the
//! bands'.
//!
//! Two coders. [`fast`] is fdeflate's (<https://github.com/image-rs/fdeflate>, MIT OR
//! Apache-2.0, by the image-rs developers): one Huffman table tuned for filtered PNG rows, fixed
//! in advance, and runs of zeros as matches at distance 1, which is what makes it several times
//! faster than zlib's fastest level for a few percent in size. fdeflate writes only whole
//! zlib streams, ending in a final block whose last bit it does not expose, so its coder is
//! carried here with the one change bands need: a block that is not final, ended by a sync
//! flush. [`zlib`] is zlib's own deflate (flate2 on zlib-rs) at a level, with the same flush.

use flate2::{Compress, Compression, FlushCompress};

/// The zlib stream's two-byte header: deflate, 32 KiB window, no dictionary; the level bits
/// are informative only.
pub(crate) const ZLIB_HEADER: [u8; 2] = [0x78, 0x01];

/// The zlib stream's trailer: the Adler-32 of everything compressed, big-endian.
pub(crate) fn zlib_trailer(adler: u32) -> [u8; 4] {
    adler.to_be_bytes()
}

/// The Adler-32 of `a` followed by `b`, from the Adler-32 of each and `b`'s length (zlib's
/// `adler32_combine`), so that bands checksummed on different cores give the stream's.
pub(crate) fn adler32_combine(a: u32, b: u32, b_len: u64) -> u32 {
    const BASE: u64 = 65521;
    let rem = b_len % BASE;
    let a1 = u64::from(a & 0xffff);
    let a2 = u64::from(a >> 16);
    let b1 = u64::from(b & 0xffff);
    let b2 = u64::from(b >> 16);
    let mut sum1 = a1 + b1 + BASE - 1;
    let mut sum2 = (rem * a1) % BASE + a2 + b2 + BASE - rem;
    if sum1 >= BASE {
        sum1 -= BASE;
    }
    if sum1 >= BASE {
        sum1 -= BASE;
    }
    if sum2 >= 2 * BASE {
        sum2 -= 2 * BASE;
    }
    if sum2 >= BASE {
        sum2 -= BASE;
    }
    ((sum2 << 16) | sum1) as u32
}

/// Bits written least significant first, as deflate packs them.
struct Bits {
    out: Vec<u8>,
    buffer: u64,
    count: u8,
}

impl Bits {
    fn put(&mut self, bits: u64, count: u8) {
        debug_assert!(count <= 64);
        self.buffer |= bits << self.count;
        self.count += count;
        if self.count >= 64 {
            self.out.extend_from_slice(&self.buffer.to_le_bytes());
            self.count -= 64;
            self.buffer = bits.checked_shr(u32::from(count - self.count)).unwrap_or(0);
        }
    }

    /// Pads with zero bits to the next byte and writes what is buffered.
    fn align(&mut self) {
        if !self.count.is_multiple_of(8) {
            self.put(0, 8 - self.count % 8);
        }
        let bytes = usize::from(self.count / 8);
        self.out
            .extend_from_slice(&self.buffer.to_le_bytes()[..bytes]);
        self.buffer = 0;
        self.count = 0;
    }

    /// Ends a block that is not the last with an empty stored block: the stream is then on a
    /// byte boundary.
    fn sync_flush(&mut self) {
        // BFINAL 0, BTYPE 00 (stored), then LEN 0 and its complement from the next byte.
        self.put(0, 3);
        self.align();
        self.out.extend_from_slice(&[0, 0, 0xff, 0xff]);
    }
}

/// fdeflate's code lengths for the 286 literal/length symbols: short codes for small values
/// (filtered rows are mostly near zero) and for the longest matches.
const LENGTHS: [u8; 286] = [
    2, 3, 4, 5, 5, 6, 6, 7, 7, 7, 8, 8, 8, 8, 8, 9, 9, 9, 9, 9, 9, 9, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12,
    12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12,
    12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12,
    12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12,
    12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12,
    12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12,
    12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12,
    12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 11, 11, 11, 11, 11, 11, 11,
    11, 11, 11, 10, 11, 10, 10, 10, 10, 10, 10, 10, 10, 10, 9, 9, 9, 9, 9, 8, 9, 8, 8, 8, 8, 8, 7,
    7, 7, 6, 6, 6, 5, 4, 3, 12, 12, 12, 9, 9, 11, 10, 11, 11, 10, 11, 11, 11, 11, 11, 11, 12, 11,
    12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 9,
];

/// The canonical codes of [`LENGTHS`], bit-reversed for writing least significant bit first.
const CODES: [u16; 286] = canonical_codes(&LENGTHS);

const fn canonical_codes(lengths: &[u8; 286]) -> [u16; 286] {
    let mut codes = [0u16; 286];
    let mut code = 0u32;
    let mut length = 1;
    while length <= 15 {
        let mut symbol = 0;
        while symbol < lengths.len() {
            if lengths[symbol] == length {
                codes[symbol] = (code as u16).reverse_bits() >> (16 - length);
                code += 1;
            }
            symbol += 1;
        }
        code <<= 1;
        length += 1;
    }
    codes
}

/// The dynamic block header that describes [`LENGTHS`] and a distance code of one bit (for
/// distance 1), as fdeflate writes it after the zlib header: 51 bytes and 5 bits. Its first bit
/// is BFINAL, set here.
const BLOCK_HEADER: [u8; 52] = [
    237, 192, 3, 160, 36, 89, 150, 198, 241, 255, 119, 238, 141, 200, 204, 167, 114, 75, 99, 174,
    109, 219, 182, 109, 219, 182, 109, 219, 182, 109, 105, 140, 158, 150, 74, 175, 158, 50, 51, 34,
    238, 249, 118, 183, 106, 122, 166, 135, 59, 107, 213, 15,
];

/// The deflate length symbols' base lengths and extra bits (RFC 1951, 3.2.5).
const LENGTH_BASES: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LENGTH_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];

/// For each match length 3..=258, its symbol's index in [`LENGTH_BASES`].
const LENGTH_INDEX: [u8; 256] = {
    let mut index = [0u8; 256];
    let mut length = 3;
    while length <= 258 {
        let mut i = 28;
        while LENGTH_BASES[i] > length as u16 {
            i -= 1;
        }
        index[length - 3] = i as u8;
        length += 1;
    }
    index
};

/// Compresses one band of filtered rows with fdeflate's table into a block of its own,
/// preceded by the zlib header if it is the `first` band, and ended by a sync flush unless it
/// is the `last`.
pub(crate) fn fast(data: &[u8], first: bool, last: bool) -> Vec<u8> {
    let mut bits = Bits {
        out: Vec::with_capacity(data.len() / 2 + 64),
        buffer: 0,
        count: 0,
    };
    if first {
        bits.out.extend_from_slice(&ZLIB_HEADER);
    }
    let (whole, tail) = BLOCK_HEADER.split_at(BLOCK_HEADER.len() - 1);
    bits.out.push(whole[0] & !1 | u8::from(last));
    bits.out.extend_from_slice(&whole[1..]);
    bits.put(u64::from(tail[0]), 5);

    let literal = |bits: &mut Bits, byte: u8| {
        bits.put(u64::from(CODES[byte as usize]), LENGTHS[byte as usize]);
    };
    let mut run = 0u32;
    let mut chunks = data.chunks_exact(8);
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        if word == 0 {
            run += 8;
            continue;
        } else if run > 0 {
            let run_extra = word.trailing_zeros() / 8;
            write_run(&mut bits, run + run_extra);
            run = 0;
            if run_extra > 0 {
                run = word.leading_zeros() / 8;
                for &byte in &chunk[run_extra as usize..8 - run as usize] {
                    literal(&mut bits, byte);
                }
                continue;
            }
        }
        let run_start = word.leading_zeros() / 8;
        if run_start > 0 {
            for &byte in &chunk[..8 - run_start as usize] {
                literal(&mut bits, byte);
            }
            run = run_start;
            continue;
        }
        // Four literals at a time: at most 48 bits.
        for quad in chunk.chunks_exact(4) {
            let mut code = 0u64;
            let mut length = 0u8;
            for &byte in quad {
                code |= u64::from(CODES[byte as usize]) << length;
                length += LENGTHS[byte as usize];
            }
            bits.put(code, length);
        }
    }
    if run > 0 {
        write_run(&mut bits, run);
    }
    for &byte in chunks.remainder() {
        literal(&mut bits, byte);
    }
    // End of block.
    bits.put(u64::from(CODES[256]), LENGTHS[256]);
    if last {
        bits.align();
    } else {
        bits.sync_flush();
    }
    bits.out
}

/// A run of `run` zeros: one literal zero, then matches at distance 1 (whose one-bit distance
/// code is 0), or literal zeros for a short run.
fn write_run(bits: &mut Bits, mut run: u32) {
    bits.put(u64::from(CODES[0]), LENGTHS[0]);
    run -= 1;
    while run >= 258 {
        bits.put(u64::from(CODES[285]), LENGTHS[285] + 1);
        run -= 258;
    }
    if run > 4 {
        let index = LENGTH_INDEX[run as usize - 3] as usize;
        let symbol = 257 + index;
        bits.put(u64::from(CODES[symbol]), LENGTHS[symbol]);
        let extra = run - u32::from(LENGTH_BASES[index]);
        // The extra bits, then the distance code's one zero bit.
        bits.put(u64::from(extra), LENGTH_EXTRA[index] + 1);
    } else {
        // The code for a literal zero is all zero bits.
        debug_assert_eq!(CODES[0], 0);
        bits.put(0, run as u8 * LENGTHS[0]);
    }
}

/// Compresses one band of filtered rows with zlib's deflate at `level` (1 to 9), as [`fast`]
/// does: the zlib header before the `first`, a sync flush after all but the `last`.
pub(crate) fn zlib(data: &[u8], level: u32, first: bool, last: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 2 + 64);
    if first {
        out.extend_from_slice(&ZLIB_HEADER);
    }
    // Raw deflate: the zlib header and trailer are the stream's, written once.
    let mut deflate = Compress::new(Compression::new(level), false);
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut input = data;
    loop {
        out.reserve(input.len() / 2 + 1024);
        let before = deflate.total_in();
        let status = deflate
            .compress_vec(input, &mut out, flush)
            .expect("deflate takes any bytes into a growing buffer");
        input = &input[(deflate.total_in() - before) as usize..];
        let done = match flush {
            FlushCompress::Finish => status == flate2::Status::StreamEnd,
            // Flushed once the input is taken and the output had room to spare.
            _ => input.is_empty() && out.len() < out.capacity(),
        };
        if done {
            return out;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes like filtered rows: runs of zeros, small values, and some noise.
    fn rows(seed: u64, len: usize) -> Vec<u8> {
        let mut state = seed;
        (0..len)
            .map(|i| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let r = (state >> 33) as u32;
                match (i / 97 + r as usize) % 5 {
                    0 | 1 => 0,
                    2 => (r % 5) as u8,
                    3 => (r % 3) as u8 ^ 0xff,
                    _ => (r >> 8) as u8,
                }
            })
            .collect()
    }

    fn inflate(stream: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut z = flate2::Decompress::new(true);
        loop {
            out.reserve(1 << 16);
            let before = z.total_in();
            let status = z
                .decompress_vec(
                    &stream[z.total_in() as usize..],
                    &mut out,
                    flate2::FlushDecompress::Finish,
                )
                .expect("a valid zlib stream");
            if status == flate2::Status::StreamEnd {
                assert_eq!(z.total_in() as usize, stream.len(), "nothing after the end");
                return out;
            }
            assert!(z.total_in() > before || out.len() == out.capacity());
        }
    }

    #[test]
    fn bands_compressed_apart_join_into_one_zlib_stream() {
        let data = rows(7, 300_001);
        for cuts in [vec![], vec![1], vec![8, 9, 4096], vec![100_000, 200_003]] {
            for coder in ["fast", "zlib"] {
                let mut edges = vec![0];
                edges.extend(&cuts);
                edges.push(data.len());
                let mut stream = Vec::new();
                let mut adler = 1;
                for (i, pair) in edges.windows(2).enumerate() {
                    let band = &data[pair[0]..pair[1]];
                    let (first, last) = (i == 0, i == edges.len() - 2);
                    stream.extend(match coder {
                        "fast" => fast(band, first, last),
                        _ => zlib(band, 6, first, last),
                    });
                    adler = adler32_combine(adler, simd_adler32::adler32(&band), band.len() as u64);
                }
                stream.extend(zlib_trailer(adler));
                assert_eq!(inflate(&stream), data, "{coder} cut at {cuts:?}");
            }
        }
    }

    #[test]
    fn adler_combined_equals_adler_of_the_whole() {
        let data = rows(3, 200_000);
        for cut in [0, 1, 65_521, 100_000, 200_000] {
            let (a, b) = data.split_at(cut);
            assert_eq!(
                adler32_combine(
                    simd_adler32::adler32(&a),
                    simd_adler32::adler32(&b),
                    b.len() as u64
                ),
                simd_adler32::adler32(&data.as_slice()),
                "cut at {cut}"
            );
        }
    }
}
