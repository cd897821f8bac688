//! Memory: how much the machine can give one run, and allocations that fail with an error
//! instead of aborting the process.

use std::alloc::Layout;

use crate::error::{Error, Result};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// The memory budget used when none is given: half of the memory this process may use (the
/// machine's physical memory, or less where a cgroup or `ulimit -v`/`-d` caps it), at least
/// 256 MiB. Half, so that no single input can take the machine down with it; 4 GiB where the
/// system does not say (outside Linux).
pub fn default_memory_budget() -> u64 {
    match usable_memory() {
        Some(bytes) => (bytes / 2).max(256 * MIB),
        None => 4 * GIB,
    }
}

/// The machine's physical memory, capped by the cgroup limits above this process (v2 or v1)
/// and by its address-space and data-size limits.
fn usable_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let total_kib: u64 = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let physical = total_kib * 1024;
    Some(
        cgroup_limits()
            .chain(resource_limits())
            .fold(physical, u64::min),
    )
}

/// The memory limits of this process's cgroup and each cgroup above it. A cgroup without a
/// limit says "max" (v2) or a huge number (v1), which never wins the minimum.
fn cgroup_limits() -> impl Iterator<Item = u64> {
    let membership = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mut files = vec![
        // Inside a container the process's own cgroup is mounted as the root.
        "/sys/fs/cgroup/memory.max".to_owned(),
        "/sys/fs/cgroup/memory/memory.limit_in_bytes".to_owned(),
    ];
    for line in membership.lines() {
        // "0::/user.slice/..." (v2) or "4:memory:/docker/..." (v1).
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next(), fields.next(), fields.next());
        let Some(path) = path else { continue };
        let (root, file) = match controllers {
            Some("") => ("/sys/fs/cgroup", "memory.max"),
            Some(c) if c.split(',').any(|c| c == "memory") => {
                ("/sys/fs/cgroup/memory", "memory.limit_in_bytes")
            }
            _ => continue,
        };
        let mut dir = std::path::PathBuf::from(path);
        loop {
            let relative = dir.strip_prefix("/").unwrap_or(&dir);
            files.push(format!("{root}/{}/{file}", relative.display()));
            if !dir.pop() {
                break;
            }
        }
    }
    files.into_iter().filter_map(|file| {
        std::fs::read_to_string(file)
            .ok()?
            .trim()
            .parse::<u64>()
            .ok()
    })
}

/// The soft `RLIMIT_AS` and `RLIMIT_DATA` of this process, where set.
fn resource_limits() -> impl Iterator<Item = u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let mut found = Vec::new();
    for line in limits.lines() {
        for name in ["Max address space", "Max data size"] {
            if let Some(rest) = line.strip_prefix(name)
                && let Some(Ok(bytes)) = rest.split_whitespace().next().map(str::parse::<u64>)
            {
                found.push(bytes);
            }
        }
    }
    found.into_iter()
}

/// `len` zeroed bytes, or [`Error::OutOfMemory`] naming `what` when the system refuses them.
///
/// Like `vec![0; len]` the block comes from the allocator's zeroing path, so untouched pages
/// cost nothing, but a refusal is an error instead of an abort.
pub(crate) fn zeroed_bytes(len: usize, what: &str) -> Result<Vec<u8>> {
    zeroed(len, what)
}

/// `len` zeroed values of a plain type (all bits zero is a valid value: `Pod`), as
/// [`zeroed_bytes`] allocates them.
pub(crate) fn zeroed<T: bytemuck::Pod>(len: usize, what: &str) -> Result<Vec<T>> {
    let bytes = len.saturating_mul(size_of::<T>());
    if bytes == 0 {
        return Ok(Vec::new());
    }
    let refused = || Error::OutOfMemory {
        what: what.to_owned(),
        bytes: bytes as u64,
    };
    let layout = Layout::array::<T>(len).map_err(|_| refused())?;
    // SAFETY: `layout` has a non-zero size. A non-null result is a block of `len` zeroed `T`s
    // with `T`'s alignment from the global allocator, which is exactly what a `Vec<T>` of
    // length and capacity `len` owns and later frees with the same layout.
    let pointer = unsafe { std::alloc::alloc_zeroed(layout) };
    if pointer.is_null() {
        return Err(refused());
    }
    advise_huge_pages(pointer, bytes);
    // SAFETY: see above; every `T` is initialised, and all-zero bits are a valid `T` (`Pod`).
    Ok(unsafe { Vec::from_raw_parts(pointer.cast::<T>(), len, len) })
}

/// Blocks at least this large ask for transparent huge pages.
const HUGE_PAGE_THRESHOLD: usize = 4 << 20;

/// Asks Linux to back the block with 2 MiB pages where it can, before anything touches it: a
/// fresh output image is otherwise faulted in 4 KiB at a time, which costs more than filtering
/// it (a quarter of a one-thread run at 16384², measured with perf). Only advice: where
/// transparent huge pages are off, or the block is small, nothing changes.
#[cfg(target_os = "linux")]
fn advise_huge_pages(pointer: *mut u8, len: usize) {
    if len < HUGE_PAGE_THRESHOLD {
        return;
    }
    // SAFETY: sysconf only reads a system constant.
    let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        size if size > 0 => size as usize,
        _ => return,
    };
    let start = (pointer as usize).next_multiple_of(page);
    let end = (pointer as usize + len) / page * page;
    if end > start {
        // SAFETY: the range lies inside the block just allocated, which this process owns;
        // MADV_HUGEPAGE changes how its pages are backed, never their contents (zero).
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages(_pointer: *mut u8, _len: usize) {}

/// Parses a count that must be at least 1, saying so for negative numbers too (a plain `u64`
/// parser calls `-1` an "invalid digit").
pub fn parse_positive_count(text: &str) -> std::result::Result<u64, String> {
    match text.trim().parse::<i128>() {
        Ok(n) if n >= 1 && n <= i128::from(u64::MAX) => Ok(n as u64),
        Ok(n) => Err(format!("{n} is not in 1..={}", u64::MAX)),
        Err(_) => Err(format!("'{text}' is not a whole number")),
    }
}

/// Parses a size as people write it: `1073741824`, `512M`, `1.5G`, `2GiB`, `64k` (units are
/// powers of 1024, as in `ulimit` and `sort -S`; an optional `B` or `iB` may follow).
pub fn parse_bytes(text: &str) -> std::result::Result<u64, String> {
    let trimmed = text.trim();
    if trimmed.starts_with('-') {
        return Err(format!("'{trimmed}': a size cannot be negative"));
    }
    let lower = trimmed.to_ascii_lowercase();
    let number_end = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(number_end);
    let scale: u64 = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => {
            return Err(format!(
                "'{trimmed}': unknown unit '{other}' (use a number of bytes, or K, M, G, T)"
            ));
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{trimmed}' is not a size (examples: 512M, 4G, 1073741824)"))?;
    let bytes = value * scale as f64;
    if !bytes.is_finite() || bytes < 1.0 || bytes >= u64::MAX as f64 {
        return Err(format!("'{trimmed}' is not a size of at least one byte"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_binary_units() {
        assert_eq!(parse_bytes("1073741824"), Ok(GIB));
        assert_eq!(parse_bytes("512M"), Ok(512 * MIB));
        assert_eq!(parse_bytes("1.5g"), Ok(3 * GIB / 2));
        assert_eq!(parse_bytes("2GiB"), Ok(2 * GIB));
        assert_eq!(parse_bytes(" 64 kB "), Ok(64 * 1024));
        for bad in ["", "-1", "0", "1.2.3", "12X", "G", "nan"] {
            assert!(parse_bytes(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn the_default_budget_is_half_the_machine_and_never_tiny() {
        let budget = default_memory_budget();
        assert!(budget >= 256 * MIB);
        if let Some(usable) = usable_memory() {
            assert_eq!(budget, (usable / 2).max(256 * MIB));
        }
    }

    #[test]
    fn zeroed_bytes_are_zero_and_refusals_are_errors() {
        // Below and above the size that asks for huge pages.
        for len in [1 << 20, (HUGE_PAGE_THRESHOLD * 2) + 12345] {
            let bytes = zeroed_bytes(len, "a test").unwrap();
            assert_eq!(bytes.len(), len);
            assert!(bytes.iter().all(|&b| b == 0));
        }
        assert!(zeroed_bytes(0, "nothing").unwrap().is_empty());
        // More than any allocator hands out: an error naming what it was for, not an abort.
        match zeroed_bytes(usize::MAX / 2, "a huge plane") {
            Err(Error::OutOfMemory { what, .. }) => assert_eq!(what, "a huge plane"),
            other => panic!("expected OutOfMemory, got {:?}", other.map(|v| v.len())),
        }
    }
}
