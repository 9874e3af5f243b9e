//! The baseline for `benches/throughput.sh`: the plainest possible read of a
//! capture file through the same `pcap` crate segwatch uses, touching every
//! frame. Run: cargo bench --bench pcap_read -- FILE

fn main() {
    let Some(path) = std::env::args().skip(1).find(|a| !a.starts_with('-')) else {
        eprintln!("usage: cargo bench --bench pcap_read -- FILE");
        std::process::exit(2);
    };
    let started = std::time::Instant::now();
    let mut cap = match pcap::Capture::from_file_with_precision(&path, pcap::Precision::Nano) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(1);
        }
    };
    let (mut frames, mut bytes, mut check) = (0u64, 0u64, 0u64);
    while let Ok(p) = cap.next_packet() {
        frames += 1;
        bytes += u64::from(p.header.len);
        check = check.wrapping_add(u64::from(p.data.first().copied().unwrap_or(0)));
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "frames={frames} bytes={bytes} seconds={secs:.6} pps={:.0} check={check}",
        frames as f64 / secs
    );
}
