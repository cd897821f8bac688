//! `gpuconv filter`'s inputs: those on the command line, then those `--from-list` names, read
//! a line at a time as the batch takes them, so that a list of millions of paths (or an
//! endless one, `find /`) is never held whole.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context, Result, bail};

use crate::args::FilterArgs;
use crate::usage;

/// The name `-` takes for standard input and output.
pub const STANDARD: &str = "-";

pub fn is_standard(path: &Path) -> bool {
    path.as_os_str() == STANDARD
}

/// The longest line a list of inputs may have: longer than any path a system takes.
const MAX_LIST_LINE: usize = 16 << 10;

/// The inputs of one run.
pub struct Inputs {
    /// Inputs taken and not yet handed out: the command line's, and those the list was read
    /// ahead for.
    pub known: Vec<PathBuf>,
    list: Option<List>,
}

/// A list of inputs, one per line, read as it is consumed.
struct List {
    lines: Box<dyn std::io::BufRead + Send>,
    /// What messages call it.
    name: String,
    /// Whether the list is standard input, which then cannot also be an image.
    on_standard_input: bool,
    /// Whether an input so far is standard input (`-`), which can be read once.
    standard_taken: bool,
    /// Lines read so far.
    line: usize,
    /// Set once the list is read to its end or failed.
    ended: bool,
}

impl Inputs {
    /// The command line's inputs, and the list `--from-list` names, opened (nothing of it is
    /// read yet).
    pub fn open(args: &FilterArgs) -> Result<Self> {
        let known = args.inputs.clone();
        let standard = known.iter().filter(|i| is_standard(i)).count();
        let list = args.from_list.as_deref().map(Path::to_path_buf);
        if standard == 1 && list.as_deref().is_some_and(is_standard) {
            bail!(usage(
                "standard input cannot hold both the list (--from-list -) and an image (-)"
            ));
        }
        if standard > 1 {
            bail!(usage(
                "standard input (-) can be read only once: as one image, or as the list"
            ));
        }
        let list = match list {
            None => None,
            Some(list) => {
                let on_standard_input = is_standard(&list);
                let name = if on_standard_input {
                    "standard input".to_owned()
                } else {
                    format!("'{}'", gpuconv::text::escape_path(&list))
                };
                let lines: Box<dyn std::io::BufRead + Send> = if on_standard_input {
                    Box::new(std::io::BufReader::new(std::io::stdin()))
                } else {
                    let file = std::fs::File::open(&list)
                        .with_context(|| format!("cannot read the list of inputs {name}"))?;
                    Box::new(std::io::BufReader::new(file))
                };
                Some(List {
                    lines,
                    name,
                    on_standard_input,
                    standard_taken: standard == 1,
                    line: 0,
                    ended: false,
                })
            }
        };
        let mut inputs = Self { known, list };
        // At least one input, or a clear error now.
        inputs.read_ahead(1)?;
        if inputs.known.is_empty() {
            let name = inputs.list.as_ref().map_or("", |l| l.name.as_str());
            bail!(usage(format!(
                "the list {} names no input",
                name.replace("standard input", "on standard input")
            )));
        }
        Ok(inputs)
    }

    /// Reads the list until `count` inputs are known or it ends.
    pub fn read_ahead(&mut self, count: usize) -> Result<()> {
        while self.known.len() < count {
            let Some(list) = &mut self.list else {
                return Ok(());
            };
            match list.next_input()? {
                Some(input) => self.known.push(input),
                None => return Ok(()),
            }
        }
        Ok(())
    }

    /// Whether every input is known: no list, or one read to its end.
    pub fn all_known(&self) -> bool {
        self.list.as_ref().is_none_or(|l| l.ended)
    }

    /// Every input, the known ones first, then the list's as it is read. A list that fails
    /// (a line too long, standard input named twice) ends the inputs there; its error is in
    /// `failed`.
    pub fn into_iter(
        self,
        failed: Arc<Mutex<Option<anyhow::Error>>>,
    ) -> impl Iterator<Item = PathBuf> + Send {
        let mut list = self.list;
        self.known.into_iter().chain(std::iter::from_fn(move || {
            match list.as_mut()?.next_input() {
                Ok(input) => input,
                Err(error) => {
                    failed
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .get_or_insert(error);
                    None
                }
            }
        }))
    }
}

impl List {
    /// The next path in the list (CRLF endings and blank lines are fine), taken as bytes: a
    /// name that is not UTF-8 is a name like any other on Unix. A line is read at most
    /// [`MAX_LIST_LINE`] bytes at a time, so that `/dev/zero` is an error rather than memory
    /// filling up.
    fn next_input(&mut self) -> Result<Option<PathBuf>> {
        use std::io::{BufRead, Read};
        if self.ended {
            return Ok(None);
        }
        let mut line = Vec::new();
        loop {
            line.clear();
            let read = (&mut self.lines)
                .take(MAX_LIST_LINE as u64 + 1)
                .read_until(b'\n', &mut line);
            self.line += 1;
            let read = match read {
                Ok(read) => read,
                Err(error) => return self.fail(error.into()),
            };
            if read == 0 {
                self.ended = true;
                return Ok(None);
            }
            if line.len() > MAX_LIST_LINE {
                let error = anyhow::anyhow!(
                    "line {} is longer than {MAX_LIST_LINE} bytes: not a list of paths",
                    self.line
                );
                return self.fail(error);
            }
            let path = line.strip_suffix(b"\n").unwrap_or(&line);
            let path = path.strip_suffix(b"\r").unwrap_or(path);
            if path.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let path = match path_from_bytes(path) {
                Ok(path) => path,
                Err(error) => return self.fail(error),
            };
            if is_standard(&path) {
                if self.on_standard_input || self.standard_taken {
                    self.ended = true;
                    bail!(usage(
                        "standard input (-) can be read only once: as one image, or as the list"
                    ));
                }
                self.standard_taken = true;
            }
            return Ok(Some(path));
        }
    }

    /// Ends the list with `error`, said of the list.
    fn fail(&mut self, error: anyhow::Error) -> Result<Option<PathBuf>> {
        self.ended = true;
        let name = self.name.replace("standard input", "from standard input");
        Err(error.context(format!("cannot read the list of inputs {name}")))
    }
}

/// A path from a list's bytes: any bytes on Unix; UTF-8 elsewhere.
fn path_from_bytes(bytes: &[u8]) -> Result<PathBuf> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        Ok(PathBuf::from(std::ffi::OsStr::from_bytes(bytes)))
    }
    #[cfg(not(unix))]
    {
        match std::str::from_utf8(bytes) {
            Ok(text) => Ok(PathBuf::from(text)),
            Err(_) => bail!(
                "'{}' is not text, which names a file here",
                gpuconv::text::escape_bytes(bytes)
            ),
        }
    }
}
