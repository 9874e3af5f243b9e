//! Capture-file reading on arbitrary bytes: classic pcap goes through
//! libpcap, pcapng through pcap-parser, and every frame read is decoded.
//! The reader opens paths, so each input is written to a temporary file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use segwatch::capture::{FileSource, FrameSource, Next};
use segwatch::decode::decode;

fuzz_target!(|input: &[u8]| {
    let Ok(mut file) = tempfile::NamedTempFile::new() else {
        return;
    };
    if std::io::Write::write_all(&mut file, input).is_err() {
        return;
    }
    let Ok(mut src) = FileSource::open(&[file.path()]) else {
        return;
    };
    while let Next::Frame(f) = src.next_frame() {
        let _ = decode(f.link, f.data, f.wire_len, f.ts_ns);
    }
    let _ = src.problems();
});
