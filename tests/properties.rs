//! Properties over arbitrary input: decoding and config parsing never panic,
//! and the flow key is symmetric.

use std::path::Path;

use proptest::prelude::*;
use segwatch::config::Config;
use segwatch::decode::{Body, LinkType, decode};
use segwatch::flow::{Endpoint, FlowKey};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..256), dlt in prop::sample::select(vec![1, 113, 276, 101, 0, 228, 147])) {
        let _ = decode(LinkType::from_dlt(dlt), &data, data.len() as u32, 0);
    }

    #[test]
    fn decode_of_ethernet_ip_prefixes_never_panics(
        body in proptest::collection::vec(any::<u8>(), 0..120),
        ether_type in prop::sample::select(vec![0x0800u16, 0x86dd, 0x8100, 0x88a8, 0x0806]),
        version in prop::sample::select(vec![0x45u8, 0x46, 0x4f, 0x60, 0x41]),
    ) {
        // Frames that pass the link layer, so the fuzzing reaches IP and transport.
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&ether_type.to_be_bytes());
        f.push(version);
        f.extend_from_slice(&body);
        if let Ok(d) = decode(LinkType::Ethernet, &f, f.len() as u32, 0)
            && let Body::Ip(ip) = d.packet.body
        {
            let (k, _) = FlowKey::for_ip(d.packet.vlans, &ip);
            prop_assert!(k.lo.ip == ip.src || k.hi.ip == ip.src || ip.quoted.is_some());
        }
    }

    #[test]
    fn config_parsing_never_panics(text in "\\PC{0,200}") {
        let _ = Config::parse(&text, Path::new("fuzz.toml"));
    }

    #[test]
    fn flow_key_is_symmetric(a in any::<[u8; 4]>(), b in any::<[u8; 4]>(), pa: u16, pb: u16, proto: u8) {
        let ea = Endpoint { ip: a.into(), port: pa };
        let eb = Endpoint { ip: b.into(), port: pb };
        let (k1, s1) = FlowKey::new(Default::default(), proto, ea, eb);
        let (k2, s2) = FlowKey::new(Default::default(), proto, eb, ea);
        prop_assert_eq!(k1, k2);
        if ea != eb {
            prop_assert_eq!(s1, s2.other());
        }
    }
}
