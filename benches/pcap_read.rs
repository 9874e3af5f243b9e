//! The baseline for `benches/throughput.sh`: the plainest possible read of a
//! capture file through the same `pcap` crate segwatch uses for live capture,
//! touching every frame. With `--segwatch-reader`, the same loop over
//! segwatch's own file reader (`FileSource`), which `analyze` uses: what
//! reading alone costs segwatch.
//! Run: cargo bench --bench pcap_read -- FILE [--segwatch-reader]

use segwatch::capture::{FileSource, FrameSource, Next};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.iter().find(|a| !a.starts_with('-')).cloned() else {
        eprintln!("usage: cargo bench --bench pcap_read -- FILE [--segwatch-reader]");
        std::process::exit(2);
    };
    let own = args.iter().any(|a| a == "--segwatch-reader");
    let started = std::time::Instant::now();
    let (mut frames, mut bytes, mut check) = (0u64, 0u64, 0u64);
    let mut count = |wire_len: u32, data: &[u8]| {
        frames += 1;
        bytes += u64::from(wire_len);
        check = check.wrapping_add(u64::from(data.first().copied().unwrap_or(0)));
    };
    if own {
        let mut src = match FileSource::open(&[&path]) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(1);
            }
        };
        while let Next::Frame(f) = src.next_frame() {
            count(f.wire_len, f.data);
        }
    } else {
        let mut cap = match pcap::Capture::from_file_with_precision(&path, pcap::Precision::Nano) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{path}: {e}");
                std::process::exit(1);
            }
        };
        while let Ok(p) = cap.next_packet() {
            count(p.header.len, p.data);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "frames={frames} bytes={bytes} seconds={secs:.6} pps={:.0} check={check}",
        frames as f64 / secs
    );
}
