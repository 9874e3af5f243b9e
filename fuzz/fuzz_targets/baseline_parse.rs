//! Baseline file (versioned JSON) parsing on arbitrary text, then what is
//! done with a baseline that loads: `baseline show` and the robust
//! statistics the detectors take from its distributions.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use segwatch::baseline::{Baseline, show};

fuzz_target!(|input: &[u8]| {
    // Baseline files are read as UTF-8; anything else is refused before parsing.
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    let Ok(b) = Baseline::parse(text, Path::new("fuzz.json")) else {
        return;
    };
    let _ = show::render(&b, 8);
    for h in b.hosts.values() {
        for d in [
            &h.bytes_out_per_hour,
            &h.external_bytes_per_hour,
            &h.fanout_hosts,
            &h.fanout_ports,
        ] {
            let _ = (d.robust(), d.quantile(0.99), d.count());
        }
    }
});
