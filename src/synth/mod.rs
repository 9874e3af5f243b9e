//! Synthetic captures with known contents: a frame builder, capture-file
//! writers, conversation helpers, the bundled office sample and the benchmark
//! capture. Used by tests, benchmarks and `segwatch generate`.

pub mod bench;
pub mod frame;
pub mod office;
pub mod pcap_file;
pub mod policy;
pub mod scenario;
pub mod trace;

/// SplitMix64: a tiny deterministic generator, so generated captures are the
/// same on every machine and every run.
#[derive(Clone, Debug)]
pub struct SplitMix(pub u64);

impl SplitMix {
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}
