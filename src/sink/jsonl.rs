//! JSON lines output, for flow records (format: [`crate::flow::record`]) and
//! events (format: [`crate::segmentation::violation`]).
//!
//! For capture files the output is written to `PATH.partial` and renamed to
//! `PATH` when the run ends, so a reader never sees a half-written file under
//! the final name. For live capture lines are appended to `PATH` as they are
//! produced and written chunk by chunk (follow it with `tail -f`), rotated by size, and a
//! failing disk does not stop the capture ([`super::live_file`]). `-` writes to standard
//! output; a closed pipe (`| head`) ends the output quietly.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crossbeam_channel::Receiver;

use super::live_file::{LiveFile, OutputMetrics, Rotation};
use crate::flow::FlowRecord;

fn line<T: serde::Serialize>(w: &mut impl Write, r: &T) -> io::Result<()> {
    serde_json::to_writer(&mut *w, r)
        .map_err(io::Error::from)
        .and_then(|()| w.write_all(b"\n"))
}

/// Where JSON lines go.
pub struct JsonLinesWriter {
    out: Out,
    /// Flush standard output after every chunk (live capture).
    streaming: bool,
    /// Standard output was closed by the reader.
    closed: bool,
    pub written: u64,
}

/// A capture file's output under its temporary name, removed if the run
/// fails before it is complete (no `.partial` file is left behind).
struct Partial {
    path: PathBuf,
    keep: bool,
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

enum Out {
    /// Standard output.
    Stream(BufWriter<io::Stdout>),
    /// A capture file's output: a temporary name renamed at the end.
    Atomic {
        out: BufWriter<File>,
        tmp: Partial,
        path: PathBuf,
    },
    /// Live capture: appended, rotated, and never fatal once open.
    Live(LiveFile),
}

impl JsonLinesWriter {
    /// Write to `path`; `atomic` = via a temporary name renamed at the end
    /// (capture files), otherwise appended and flushed as flows end (live),
    /// rotated by size.
    pub fn create(path: &Path, atomic: bool, rotation: Rotation) -> io::Result<JsonLinesWriter> {
        let cannot = |p: &Path, e: io::Error| {
            io::Error::new(e.kind(), format!("cannot create {}: {e}", p.display()))
        };
        let out = if path.as_os_str() == "-" {
            Out::Stream(BufWriter::new(io::stdout()))
        } else if atomic {
            let mut tmp = path.as_os_str().to_owned();
            tmp.push(".partial");
            let tmp = PathBuf::from(tmp);
            let file = File::create(&tmp).map_err(|e| cannot(&tmp, e))?;
            Out::Atomic {
                out: BufWriter::with_capacity(1 << 20, file),
                tmp: Partial {
                    path: tmp,
                    keep: false,
                },
                path: path.to_path_buf(),
            }
        } else {
            Out::Live(LiveFile::open(path, rotation)?)
        };
        Ok(JsonLinesWriter {
            out,
            streaming: !atomic,
            closed: false,
            written: 0,
        })
    }

    /// Count lost lines, rotations and write errors (live files only).
    pub fn set_metrics(&mut self, m: OutputMetrics) {
        if let Out::Live(f) = &mut self.out {
            f.set_metrics(m);
        }
    }

    pub fn write<T: serde::Serialize>(&mut self, r: &T) -> io::Result<()> {
        if self.closed {
            return Ok(());
        }
        self.written += 1;
        let result = match &mut self.out {
            Out::Live(f) => {
                f.line(|b| serde_json::to_writer(b, r).map_err(io::Error::from));
                Ok(())
            }
            Out::Stream(w) => line(w, r),
            Out::Atomic { out, .. } => line(out, r),
        };
        self.quiet_on_closed_pipe(result)
    }

    /// A reader that went away from a pipe is not an error; a file error is.
    fn quiet_on_closed_pipe(&mut self, result: io::Result<()>) -> io::Result<()> {
        match result {
            Err(e)
                if e.kind() == io::ErrorKind::BrokenPipe && matches!(self.out, Out::Stream(_)) =>
            {
                self.closed = true;
                Ok(())
            }
            other => other,
        }
    }

    /// Flush, sync and move the file into place. Returns the lines written
    /// (for live files, less those that could not be written).
    pub fn finish(mut self) -> io::Result<u64> {
        match self.out {
            Out::Stream(mut w) => {
                let flushed = w.flush();
                self.out = Out::Stream(w);
                self.quiet_on_closed_pipe(flushed)?;
            }
            Out::Atomic { out, mut tmp, path } => {
                let file = out.into_inner().map_err(|e| e.into_error())?;
                file.sync_all()?;
                drop(file);
                // Complete now: kept even if it cannot be moved into place.
                tmp.keep = true;
                std::fs::rename(&tmp.path, &path)?;
            }
            Out::Live(f) => {
                let lost = f.finish()?;
                return Ok(self.written.saturating_sub(lost));
            }
        }
        Ok(self.written)
    }

    /// End of a chunk: live output is written so followers see it.
    pub fn chunk_done(&mut self) -> io::Result<()> {
        match &mut self.out {
            Out::Live(f) => f.flush(),
            Out::Stream(w) if self.streaming && !self.closed => {
                let flushed = w.flush();
                self.quiet_on_closed_pipe(flushed)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Write every chunk of flow records received until all senders are gone.
    pub fn drain(mut self, rx: Receiver<Vec<FlowRecord>>) -> io::Result<u64> {
        for chunk in rx {
            for r in &chunk {
                self.write(r)?;
            }
            self.chunk_done()?;
        }
        self.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capture_files_output_appears_whole_or_not_at_all() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.jsonl");
        let partial = dir.path().join("out.jsonl.partial");
        // A run that fails: the writer is dropped unfinished.
        let mut w = JsonLinesWriter::create(&path, true, Rotation::default()).expect("create");
        w.write(&serde_json::json!({"n": 1})).expect("write");
        assert!(partial.exists());
        drop(w);
        assert!(!partial.exists() && !path.exists());
        // A run that ends: moved into place.
        let mut w = JsonLinesWriter::create(&path, true, Rotation::default()).expect("create");
        w.write(&serde_json::json!({"n": 2})).expect("write");
        assert_eq!(w.finish().expect("finish"), 1);
        assert!(!partial.exists());
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "{\"n\":2}\n");
    }
}
