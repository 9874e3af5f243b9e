//! Flow records as JSON lines (format: see [`crate::flow::record`]).
//!
//! Written to `PATH.partial` and renamed to `PATH` when the run ends, so a
//! reader never sees a half-written file under the final name; `-` writes to
//! standard output.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crossbeam_channel::Receiver;

use crate::flow::FlowRecord;

/// Where flow records go.
pub struct FlowWriter {
    out: Box<dyn Write + Send>,
    tmp: Option<(PathBuf, PathBuf)>,
    pub written: u64,
}

impl FlowWriter {
    pub fn create(path: &Path) -> io::Result<FlowWriter> {
        if path.as_os_str() == "-" {
            return Ok(FlowWriter {
                out: Box::new(BufWriter::new(io::stdout())),
                tmp: None,
                written: 0,
            });
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".partial");
        let tmp = PathBuf::from(tmp);
        let file = File::create(&tmp).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot create {}: {e}", tmp.display()))
        })?;
        Ok(FlowWriter {
            out: Box::new(BufWriter::with_capacity(1 << 20, file)),
            tmp: Some((tmp, path.to_path_buf())),
            written: 0,
        })
    }

    pub fn write(&mut self, r: &FlowRecord) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, r)?;
        self.out.write_all(b"\n")?;
        self.written += 1;
        Ok(())
    }

    /// Flush, sync and move the file into place.
    pub fn finish(mut self) -> io::Result<u64> {
        self.out.flush()?;
        drop(self.out);
        if let Some((tmp, path)) = self.tmp {
            File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, &path)?;
        }
        Ok(self.written)
    }

    /// Write every chunk received until all senders are gone.
    pub fn drain(mut self, rx: Receiver<Vec<FlowRecord>>) -> io::Result<u64> {
        for chunk in rx {
            for r in &chunk {
                self.write(r)?;
            }
        }
        self.finish()
    }
}
