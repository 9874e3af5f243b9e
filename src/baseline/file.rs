//! Reading and writing baseline files: versioned JSON, written atomically
//! (a temporary file renamed into place), checked on read with errors that
//! name the file, the line and what to do.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use super::model::{Baseline, SCHEMA, VERSION};

#[derive(Debug, Error)]
pub enum BaselineError {
    #[error(
        "cannot read baseline {path}: {reason}\n  fix: check the path and that segwatch may read it, or learn one with `segwatch learn`"
    )]
    Read { path: PathBuf, reason: String },
    #[error("{path}:{line}:{column}: {message}\n  fix: {fix}")]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
        fix: String,
    },
    #[error(
        "cannot write baseline {path}: {reason}\n  fix: write it to a folder segwatch may create files in, or make this one writable"
    )]
    Write { path: PathBuf, reason: String },
}

/// The fields every version has: what a file that does not parse says it is.
#[derive(Deserialize)]
struct Header {
    schema: Option<String>,
    version: Option<u32>,
}

impl Baseline {
    /// Read and check a baseline file.
    pub fn load(path: &Path) -> Result<Baseline, BaselineError> {
        let text = std::fs::read_to_string(path).map_err(|e| BaselineError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Baseline::parse(&text, path)
    }

    /// Check baseline text; `path` is used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Baseline, BaselineError> {
        let invalid = |e: &serde_json::Error, fix: &str| BaselineError::Invalid {
            path: path.to_path_buf(),
            line: e.line(),
            // serde_json counts a position just after a newline as column 0.
            column: e.column().max(1),
            message: e.to_string(),
            fix: fix.to_string(),
        };
        let relearn = "re-learn it with `segwatch learn` (the file is not a usable baseline)";
        // One parse of the whole file (it can be megabytes); only when it
        // fails is the header read on its own, to say why in its terms.
        let parsed = serde_json::from_str::<Baseline>(text);
        let header = match &parsed {
            Ok(b) => Header {
                schema: Some(b.schema.clone()),
                version: Some(b.version),
            },
            Err(e) => serde_json::from_str(text).map_err(|_| invalid(e, relearn))?,
        };
        let wrong = |message: String, fix: &str| BaselineError::Invalid {
            path: path.to_path_buf(),
            line: 1,
            column: 1,
            message,
            fix: fix.to_string(),
        };
        if header.schema.as_deref() != Some(SCHEMA) {
            return Err(wrong(
                format!("not a segwatch baseline (schema is not \"{SCHEMA}\")"),
                "point --baseline at a file written by `segwatch learn`",
            ));
        }
        match header.version {
            Some(VERSION) => {}
            Some(v) if v > VERSION => {
                return Err(wrong(
                    format!(
                        "baseline version {v} was written by a newer segwatch; this one reads versions up to {VERSION}"
                    ),
                    "upgrade segwatch, or re-learn the baseline with this version",
                ));
            }
            v => {
                return Err(wrong(
                    format!(
                        "baseline version {v:?} is not supported (this segwatch reads {VERSION})"
                    ),
                    relearn,
                ));
            }
        }
        parsed.map_err(|e| invalid(&e, relearn))
    }

    /// The file form: JSON with one line per zone, host and ARP binding, so
    /// that people can read and grep it and diffs stay small, while a
    /// baseline of 20,000 hosts stays a few MB (pretty-printing every
    /// field would triple it, and the time to load it).
    pub fn to_json(&self) -> serde_json::Result<Vec<u8>> {
        use std::io::Write as _;
        let mut out = Vec::new();
        let w = &mut out;
        let line = |w: &mut Vec<u8>,
                    key: &str,
                    v: &dyn erased::Json,
                    last: bool|
         -> serde_json::Result<()> {
            write!(w, "  {}: ", serde_json::to_string(key)?).map_err(serde_json::Error::io)?;
            v.write(w)?;
            w.extend_from_slice(if last { b"\n" } else { b",\n" });
            Ok(())
        };
        w.extend_from_slice(b"{\n");
        line(w, "schema", &self.schema, false)?;
        line(w, "version", &self.version, false)?;
        line(w, "learned", &self.learned, false)?;
        line(w, "limits", &self.limits, false)?;
        w.extend_from_slice(b"  \"zones\": {");
        erased::map_lines(w, self.zones.iter())?;
        w.extend_from_slice(b"},\n  \"hosts\": {");
        let mut hosts: Vec<_> = self.hosts.iter().collect();
        hosts.sort_by_key(|(ip, _)| **ip);
        erased::map_lines(w, hosts.into_iter())?;
        w.extend_from_slice(b"},\n  \"arp\": {");
        let mut arp: Vec<_> = self.arp.iter().collect();
        arp.sort_by_key(|(ip, _)| **ip);
        erased::map_lines(w, arp.into_iter())?;
        w.extend_from_slice(b"},\n");
        line(w, "beacons", &self.beacons, true)?;
        w.extend_from_slice(b"}\n");
        Ok(out)
    }

    /// Check that [`Baseline::save`] will be able to write `path`, before
    /// hours of learning rather than after: creates its folder and the
    /// temporary file it is written through, then removes that file.
    pub fn check_writable(path: &Path) -> Result<(), BaselineError> {
        let err = |e: std::io::Error| BaselineError::Write {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let mut probe = path.as_os_str().to_owned();
        probe.push(".partial");
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&probe)
            .map_err(err)?;
        std::fs::remove_file(&probe).map_err(err)
    }

    /// Write atomically: readers see the old file or the new one, never half.
    pub fn save(&self, path: &Path) -> Result<(), BaselineError> {
        let err = |reason: String| BaselineError::Write {
            path: path.to_path_buf(),
            reason,
        };
        let json = self.to_json().map_err(|e| err(e.to_string()))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        }
        crate::sink::write_atomic(path, &json).map_err(|e| err(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baseline::model::{Edge, HostBaseline, Mac, Proto};

    #[test]
    fn round_trip_keeps_everything() {
        let mut b = Baseline::default();
        let mut h = HostBaseline {
            zone: "corp".into(),
            ..HostBaseline::default()
        };
        h.peers.insert(
            Edge {
                peer: "10.0.0.2".parse().expect("ip"),
                proto: Proto(6),
                port: 445,
            },
            7,
        );
        h.bytes_out_per_hour.record(12_345);
        b.hosts.insert("10.0.0.1".parse().expect("ip"), h);
        b.arp.insert(
            "10.0.0.1".parse().expect("ip"),
            [Mac([2, 0, 0, 0, 0, 1])].into_iter().collect(),
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("b.json");
        b.save(&path).expect("saved");
        let back = Baseline::load(&path).expect("loads");
        assert_eq!(back, b);
    }

    #[test]
    fn versions_and_garbage_get_clear_errors() {
        let p = Path::new("b.json");
        let newer = format!("{{\"schema\":\"{SCHEMA}\",\"version\":99}}");
        let e = Baseline::parse(&newer, p).expect_err("newer").to_string();
        assert!(e.contains("newer segwatch") && e.contains("fix:"), "{e}");
        let e = Baseline::parse("{\"schema\":\"x\"}", p)
            .expect_err("schema")
            .to_string();
        assert!(e.contains("not a segwatch baseline"), "{e}");
        let e = Baseline::parse("{\n  \"schema\": ", p)
            .expect_err("cut")
            .to_string();
        assert!(e.starts_with("b.json:2:"), "{e}");
        let extra = format!("{{\"schema\":\"{SCHEMA}\",\"version\":1,\"bogus\":1}}");
        let e = Baseline::parse(&extra, p).expect_err("unknown").to_string();
        assert!(e.contains("bogus"), "{e}");
    }
}

/// Helpers for [`Baseline::to_json`].
mod erased {
    use serde::Serialize;

    /// Anything serializable, written compactly.
    pub trait Json {
        fn write(&self, w: &mut Vec<u8>) -> serde_json::Result<()>;
    }

    impl<T: Serialize> Json for T {
        fn write(&self, w: &mut Vec<u8>) -> serde_json::Result<()> {
            serde_json::to_writer(w, self)
        }
    }

    /// `\n    "key": value,` per entry, then a newline and indent for `}`.
    pub fn map_lines<'a, K, V>(
        w: &mut Vec<u8>,
        entries: impl Iterator<Item = (&'a K, &'a V)>,
    ) -> serde_json::Result<()>
    where
        K: std::fmt::Display + 'a,
        V: Serialize + 'a,
    {
        let mut first = true;
        for (k, v) in entries {
            w.extend_from_slice(if first { b"\n    " } else { b",\n    " });
            first = false;
            serde_json::to_writer(&mut *w, &k.to_string())?;
            w.extend_from_slice(b": ");
            serde_json::to_writer(&mut *w, v)?;
        }
        if !first {
            w.extend_from_slice(b"\n  ");
        }
        Ok(())
    }
}
