//! Config (TOML, with zones, rules and detectors) parsing on arbitrary text.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use segwatch::config::Config;

fuzz_target!(|input: &[u8]| {
    // Config files are read as UTF-8; anything else is refused before parsing.
    if let Ok(text) = std::str::from_utf8(input) {
        let _ = Config::parse(text, Path::new("/etc/segwatch/fuzz.toml"));
    }
});
