//! Frame decoding on arbitrary bytes, under every link type segwatch decodes.
//!
//! Input: byte 0 picks the link type, bytes 1..5 are a big-endian amount added
//! to the captured length to give the wire length (0 = not cut by snaplen;
//! anything else also covers wire lengths shorter than the capture, as corrupt
//! files have), and the rest is the frame. `fuzz/seed.sh` writes seeds in this
//! form from the generated captures.
#![no_main]

use libfuzzer_sys::fuzz_target;
use segwatch::decode::{Body, LinkType, decode};
use segwatch::flow::FlowKey;

/// Ethernet, SLL, SLL2, raw IP (101 and 228), NULL, LOOP and one unsupported.
const LINKS: [i32; 8] = [1, 113, 276, 101, 228, 0, 108, 147];

fuzz_target!(|input: &[u8]| {
    let Some((&pick, rest)) = input.split_first() else {
        return;
    };
    let Some((delta, frame)) = rest.split_first_chunk::<4>() else {
        return;
    };
    let link = LinkType::from_dlt(LINKS[usize::from(pick) % LINKS.len()]);
    let wire_len = (frame.len() as u32).wrapping_add(u32::from_be_bytes(*delta));
    if let Ok(d) = decode(link, frame, wire_len, 0) {
        assert!(d.payload.len() <= frame.len());
        // What the dispatcher does next with every decoded IP packet.
        if let Body::Ip(ip) = d.packet.body {
            let _ = FlowKey::for_ip(d.packet.vlans, &ip);
        }
    }
});
