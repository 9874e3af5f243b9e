//! JSON lines output, for flow records (format: [`crate::flow::record`]) and
//! events (format: [`crate::segmentation::violation`]).
//!
//! For capture files the output is written to `PATH.partial` and renamed to
//! `PATH` when the run ends, so a reader never sees a half-written file under
//! the final name. For live capture lines are appended to `PATH` as they are
//! produced and flushed chunk by chunk (follow it with `tail -f`). `-` writes to standard
//! output; a closed pipe (`| head`) ends the output quietly.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crossbeam_channel::Receiver;

use crate::flow::FlowRecord;

/// Where JSON lines go.
pub struct JsonLinesWriter {
    out: Box<dyn Write + Send>,
    /// (temporary, final) names for an atomic file.
    tmp: Option<(PathBuf, PathBuf)>,
    /// Flush after every chunk (live capture).
    streaming: bool,
    /// Standard output was closed by the reader.
    closed: bool,
    pub written: u64,
}

impl JsonLinesWriter {
    /// Write to `path`; `atomic` = via a temporary name renamed at the end
    /// (capture files), otherwise appended and flushed as flows end (live).
    pub fn create(path: &Path, atomic: bool) -> io::Result<JsonLinesWriter> {
        let cannot = |p: &Path, e: io::Error| {
            io::Error::new(e.kind(), format!("cannot create {}: {e}", p.display()))
        };
        let (out, tmp): (Box<dyn Write + Send>, _) = if path.as_os_str() == "-" {
            (Box::new(BufWriter::new(io::stdout())), None)
        } else if atomic {
            let mut tmp = path.as_os_str().to_owned();
            tmp.push(".partial");
            let tmp = PathBuf::from(tmp);
            let file = File::create(&tmp).map_err(|e| cannot(&tmp, e))?;
            (
                Box::new(BufWriter::with_capacity(1 << 20, file)),
                Some((tmp, path.to_path_buf())),
            )
        } else {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| cannot(path, e))?;
            (Box::new(BufWriter::with_capacity(1 << 16, file)), None)
        };
        Ok(JsonLinesWriter {
            out,
            tmp,
            streaming: !atomic,
            closed: false,
            written: 0,
        })
    }

    pub fn write<T: serde::Serialize>(&mut self, r: &T) -> io::Result<()> {
        if self.closed {
            return Ok(());
        }
        let result = serde_json::to_writer(&mut self.out, r)
            .map_err(io::Error::from)
            .and_then(|()| self.out.write_all(b"\n"));
        self.written += 1;
        self.quiet_on_closed_pipe(result)
    }

    /// A reader that went away from a pipe is not an error; a file error is.
    fn quiet_on_closed_pipe(&mut self, result: io::Result<()>) -> io::Result<()> {
        match result {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe && self.tmp.is_none() => {
                self.closed = true;
                Ok(())
            }
            other => other,
        }
    }

    /// Flush, sync and move the file into place.
    pub fn finish(mut self) -> io::Result<u64> {
        let flushed = self.out.flush();
        self.quiet_on_closed_pipe(flushed)?;
        drop(self.out);
        if let Some((tmp, path)) = self.tmp {
            File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, &path)?;
        }
        Ok(self.written)
    }

    /// End of a chunk: live output is flushed so followers see it.
    pub fn chunk_done(&mut self) -> io::Result<()> {
        if self.streaming && !self.closed {
            let flushed = self.out.flush();
            self.quiet_on_closed_pipe(flushed)?;
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
