//! Where results leave segwatch: JSON lines (flow records, events), the
//! violation event output, and atomic file writes (reports, summaries).

pub mod events;
pub mod jsonl;
pub mod live_file;

use std::io::Write;
use std::path::{Path, PathBuf};

/// Write a file via a temporary name, sync and rename, so it is whole or
/// absent under its final name even if segwatch is killed mid-write.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".partial");
    let tmp = PathBuf::from(tmp);
    let named = |e: std::io::Error, p: &Path| {
        std::io::Error::new(e.kind(), format!("cannot write {}: {e}", p.display()))
    };
    let mut f = std::fs::File::create(&tmp).map_err(|e| named(e, &tmp))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(|e| named(e, &tmp))?;
    std::fs::rename(&tmp, path).map_err(|e| named(e, path))
}
