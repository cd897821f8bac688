//! Text that came from outside (file names, headers, bytes of an input) made safe to quote in a
//! message: control characters, and bytes that are not UTF-8, are written as escapes, so that
//! nothing an input holds can move a terminal's cursor, retitle it, ring it or forge a line.
//! Every message that quotes such text goes through here.

use std::borrow::Cow;
use std::fmt::Write;
use std::path::Path;

/// `eprintln!` that cannot panic: a line on stderr, or nothing where stderr is gone (a closed
/// terminal after SIGHUP answers every write with EIO, on which `eprintln!` panics).
macro_rules! say {
    ($($arguments:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arguments)*);
    }};
}
pub(crate) use say;

/// Whether `c` is shown as an escape: C0 and C1 controls (CR, LF, ESC, BEL included), DEL, and
/// the bidirectional overrides and isolates that reorder what follows them on screen.
fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every control character written as `\xNN` (or `\u{NNNN}` beyond one byte);
/// borrowed as it is when there is none.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    push_escaped(&mut escaped, text);
    Cow::Owned(escaped)
}

/// `bytes` as text: valid UTF-8 as [`escape`] writes it, every other byte as `\xNN`.
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut escaped = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        push_escaped(&mut escaped, chunk.valid());
        for byte in chunk.invalid() {
            let _ = write!(escaped, "\\x{byte:02x}");
        }
    }
    escaped
}

/// A path as [`escape_bytes`] writes its bytes (on Unix, where a name is any bytes), or as
/// [`escape`] writes it elsewhere.
pub fn escape_path(path: &Path) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        escape_bytes(path.as_os_str().as_bytes())
    }
    #[cfg(not(unix))]
    {
        escape(&path.to_string_lossy()).into_owned()
    }
}

fn push_escaped(out: &mut String, text: &str) {
    for c in text.chars() {
        if !needs_escape(c) {
            out.push(c);
        } else if (c as u32) < 0x100 {
            let _ = write!(out, "\\x{:02x}", c as u32);
        } else {
            let _ = write!(out, "\\u{{{:04x}}}", c as u32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_stray_bytes_are_escaped_and_the_rest_is_kept() {
        assert!(matches!(escape("scan 1 – ümlaut.png"), Cow::Borrowed(_)));
        assert_eq!(
            escape("a\x1b]0;owned\x07b\r\nc\u{202e}d\u{7f}\u{85}"),
            "a\\x1b]0;owned\\x07b\\x0d\\x0ac\\u{202e}d\\x7f\\x85"
        );
        assert_eq!(escape_bytes(b"caf\xe9\x1b[2J.png"), "caf\\xe9\\x1b[2J.png");
        assert_eq!(escape_bytes("é".as_bytes()), "é");
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            let path = Path::new(std::ffi::OsStr::from_bytes(b"dir/\xff\x07.png"));
            assert_eq!(escape_path(path), "dir/\\xff\\x07.png");
        }
    }
}
