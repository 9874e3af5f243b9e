//! A JSON lines file that a long live capture appends to: rotated by size
//! (keeping N old files), and never the reason the capture stops. When a
//! write fails (disk full, file system gone read-only, file removed with its
//! folder), lines wait in a bounded backlog; past it they are counted as
//! lost. segwatch keeps trying, at most once a second, and carries on where
//! it left off when space returns.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use prometheus::{IntCounter, IntGauge};

/// Size-based rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate when the file reaches this many bytes; 0 = never (an outside
    /// logrotate with `copytruncate` also works, since lines are appended).
    pub max_bytes: u64,
    /// Rotated files kept (`PATH.1` is the newest); older ones are removed.
    pub keep: u32,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            max_bytes: 128 << 20,
            keep: 10,
        }
    }
}

/// Lines held while the file cannot be written; past it they are lost.
pub const BACKLOG_BYTES: usize = 16 << 20;

/// Retry a failing file at most this often.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// The metrics of one output file (labelled `events` or `flows`).
#[derive(Clone)]
pub struct OutputMetrics {
    pub lost: IntCounter,
    pub errors: IntCounter,
    pub rotations: IntCounter,
    pub failing: IntGauge,
}

pub struct LiveFile {
    path: PathBuf,
    file: Option<File>,
    /// Bytes in the current file (it is truncated back to this after a
    /// partial write, so no half line stays in it).
    len: u64,
    rotation: Rotation,
    backlog: Vec<u8>,
    backlog_lines: u64,
    pub lost: u64,
    pub rotations: u64,
    failing: Option<Failing>,
    metrics: Option<OutputMetrics>,
}

struct Failing {
    since: Instant,
    last_try: Instant,
    lost_before: u64,
}

impl LiveFile {
    /// Open (append) `path`. Failing here is an error: at start the user is
    /// there to fix it.
    pub fn open(path: &Path, rotation: Rotation) -> io::Result<LiveFile> {
        let file = open_append(path)?;
        let len = file.metadata()?.len();
        Ok(LiveFile {
            path: path.to_path_buf(),
            file: Some(file),
            len,
            rotation,
            backlog: Vec::with_capacity(1 << 16),
            backlog_lines: 0,
            lost: 0,
            rotations: 0,
            failing: None,
            metrics: None,
        })
    }

    pub fn set_metrics(&mut self, m: OutputMetrics) {
        self.metrics = Some(m);
    }

    /// Queue one serialized line (without its newline).
    pub fn line(&mut self, write: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) {
        if self.backlog.len() >= BACKLOG_BYTES {
            self.lose(1);
            return;
        }
        let mark = self.backlog.len();
        match write(&mut self.backlog) {
            Ok(()) => {
                self.backlog.push(b'\n');
                self.backlog_lines += 1;
            }
            Err(_) => {
                // A value that does not serialize is not the disk's fault,
                // but it is still a line that did not make it.
                self.backlog.truncate(mark);
                self.lose(1);
            }
        }
    }

    fn lose(&mut self, n: u64) {
        self.lost += n;
        if let Some(m) = &self.metrics {
            m.lost.inc_by(n);
        }
    }

    /// Write what is queued. While the file fails this retries at most once
    /// a second and otherwise leaves the lines queued.
    pub fn flush(&mut self) {
        if self.backlog.is_empty() {
            return;
        }
        if let Some(f) = &self.failing
            && f.last_try.elapsed() < RETRY_EVERY
        {
            return;
        }
        match self.write_backlog() {
            Ok(()) => {
                if let Some(f) = self.failing.take() {
                    tracing::warn!(
                        path = %self.path.display(),
                        lost = self.lost - f.lost_before,
                        after_secs = f.since.elapsed().as_secs(),
                        "writing works again"
                    );
                    if let Some(m) = &self.metrics {
                        m.failing.set(0);
                    }
                }
                self.backlog.clear();
                self.backlog_lines = 0;
                if self.rotation.max_bytes > 0 && self.len >= self.rotation.max_bytes {
                    self.rotate();
                }
            }
            Err(e) => {
                let now = Instant::now();
                match &mut self.failing {
                    Some(f) => f.last_try = now,
                    None => {
                        tracing::error!(
                            path = %self.path.display(),
                            "cannot write ({e}); capture goes on, up to {} MiB of lines wait and the rest are counted as lost until writing works again",
                            BACKLOG_BYTES >> 20
                        );
                        self.failing = Some(Failing {
                            since: now,
                            last_try: now,
                            lost_before: self.lost,
                        });
                    }
                }
                if let Some(m) = &self.metrics {
                    m.errors.inc();
                    m.failing.set(1);
                }
            }
        }
    }

    fn write_backlog(&mut self) -> io::Result<()> {
        if self.file.is_none() {
            let f = open_append(&self.path)?;
            self.len = f.metadata()?.len();
            self.file = Some(f);
        }
        let Some(f) = &mut self.file else {
            return Err(io::Error::other("no file"));
        };
        match f.write_all(&self.backlog) {
            Ok(()) => {
                self.len += self.backlog.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Drop the half-written tail, then open afresh next time (the
                // file may have been removed or its file system remounted).
                let _ = f.set_len(self.len);
                self.file = None;
                Err(e)
            }
        }
    }

    /// PATH → PATH.1 → PATH.2 ...; the oldest beyond `keep` is removed.
    fn rotate(&mut self) {
        self.file = None;
        let keep = self.rotation.keep;
        let name = |i: u32| {
            let mut p = self.path.as_os_str().to_owned();
            p.push(format!(".{i}"));
            PathBuf::from(p)
        };
        let step = (|| -> io::Result<()> {
            if keep == 0 {
                return std::fs::remove_file(&self.path);
            }
            for i in (1..keep).rev() {
                match std::fs::rename(name(i), name(i + 1)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            std::fs::rename(&self.path, name(1))
        })();
        match step {
            Ok(()) => {
                self.rotations += 1;
                if let Some(m) = &self.metrics {
                    m.rotations.inc();
                }
            }
            // Keep appending to the same file rather than lose lines.
            Err(e) => tracing::warn!(path = %self.path.display(), "cannot rotate: {e}"),
        }
        // Reopened (or created) at the next write.
        self.len = 0;
    }

    /// Last attempt at the end of the run; what still cannot be written is
    /// counted as lost.
    pub fn finish(mut self) -> io::Result<u64> {
        if let Some(f) = &mut self.failing {
            f.last_try = Instant::now() - RETRY_EVERY;
        }
        self.flush();
        if !self.backlog.is_empty() {
            let n = self.backlog_lines;
            self.lose(n);
            tracing::error!(path = %self.path.display(), lines = n, "lines lost at exit: the file could not be written");
        }
        if let Some(f) = &self.file {
            let _ = f.sync_data();
        }
        Ok(self.lost)
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot open {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(f: &mut LiveFile, s: &str) {
        f.line(|b| {
            b.extend_from_slice(s.as_bytes());
            Ok(())
        });
    }

    #[test]
    fn rotates_by_size_and_keeps_n() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("e.jsonl");
        let mut f = LiveFile::open(
            &p,
            Rotation {
                max_bytes: 20,
                keep: 2,
            },
        )
        .expect("open");
        for i in 0..10 {
            push(&mut f, &format!("{{\"n\":{i:05}}}"));
            f.flush();
        }
        // 12-byte lines: every second line rotates.
        assert_eq!(f.rotations, 5);
        assert_eq!(f.finish().expect("finish"), 0);
        let read = |n: &str| std::fs::read_to_string(dir.path().join(n)).unwrap_or_default();
        assert_eq!(read("e.jsonl"), "");
        assert_eq!(read("e.jsonl.1"), "{\"n\":00008}\n{\"n\":00009}\n");
        assert_eq!(read("e.jsonl.2"), "{\"n\":00006}\n{\"n\":00007}\n");
        assert!(!dir.path().join("e.jsonl.3").exists());
    }

    #[test]
    fn a_removed_folder_is_survived_and_recovered() {
        let dir = tempfile::tempdir().expect("tmp");
        let sub = dir.path().join("out");
        std::fs::create_dir(&sub).expect("mkdir");
        let p = sub.join("e.jsonl");
        let mut f = LiveFile::open(&p, Rotation::default()).expect("open");
        push(&mut f, "1");
        f.flush();
        std::fs::remove_dir_all(&sub).expect("rm");
        // The open handle still writes to the unlinked file; a rotation
        // would reopen. Force a reopen as after a failed write.
        f.file = None;
        push(&mut f, "2");
        f.flush();
        assert!(f.failing.is_some(), "the write failed");
        push(&mut f, "3");
        std::fs::create_dir(&sub).expect("mkdir");
        f.failing.as_mut().expect("failing").last_try = Instant::now() - RETRY_EVERY;
        f.flush();
        assert!(f.failing.is_none(), "recovered");
        assert_eq!(f.finish().expect("finish"), 0);
        assert_eq!(std::fs::read_to_string(&p).expect("read"), "2\n3\n");
    }

    #[test]
    fn past_the_backlog_lines_are_counted_lost() {
        let dir = tempfile::tempdir().expect("tmp");
        let sub = dir.path().join("out");
        std::fs::create_dir(&sub).expect("mkdir");
        let p = sub.join("e.jsonl");
        let mut f = LiveFile::open(&p, Rotation::default()).expect("open");
        std::fs::remove_dir_all(&sub).expect("rm");
        f.file = None;
        let line = "x".repeat(1 << 20);
        for _ in 0..20 {
            push(&mut f, &line);
            f.flush();
        }
        // 16 lines of 1 MiB + newline fit under 16 MiB; then the rest.
        assert_eq!(f.lost, 4);
        assert_eq!(f.finish().expect("finish"), 20, "nothing could be written");
    }
}
