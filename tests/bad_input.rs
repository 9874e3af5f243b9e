//! Every kind of bad input, through the real binary: what segwatch does with
//! it (exit code, message naming the file or line, and a fix). The README's
//! "Bad input" table cites these tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn segwatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_segwatch"))
        .args(args)
        .output()
        .expect("run segwatch")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

/// Exit code 1 and a message on stderr holding every needle.
fn refused(out: &Output, needles: &[&str]) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    for n in needles {
        assert!(err.contains(n), "missing {n:?} in {err}");
    }
}

/// A classic pcap (microseconds, little-endian) of `frames` with `linktype`.
fn pcap(linktype: u32, frames: &[Vec<u8>]) -> Vec<u8> {
    let mut v = Vec::new();
    for w in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 65_535, linktype] {
        v.extend_from_slice(&w.to_le_bytes());
    }
    for (i, f) in frames.iter().enumerate() {
        let len = f.len() as u32;
        for w in [1_700_000_000 + i as u32, 0, len, len] {
            v.extend_from_slice(&w.to_le_bytes());
        }
        v.extend_from_slice(f);
    }
    v
}

/// An Ethernet frame: zero MACs, `ether_type`, then `rest`.
fn eth(ether_type: u16, rest: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 12];
    f.extend_from_slice(&ether_type.to_be_bytes());
    f.extend_from_slice(rest);
    f
}

/// An IPv4 header (no options) for `proto`, with `payload` after it.
fn ipv4(proto: u8, frag_offset_words: u16, payload: &[u8]) -> Vec<u8> {
    let total = (20 + payload.len()) as u16;
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&[0, 7]);
    h.extend_from_slice(&frag_offset_words.to_be_bytes());
    h.extend_from_slice(&[64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    h.extend_from_slice(payload);
    h
}

fn summary_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("summary written")).expect("json")
}

#[test]
fn corrupt_capture_file_is_refused_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let junk = dir.path().join("junk.pcap");
    std::fs::write(&junk, b"this is not a capture file at all, just text").expect("write");
    let empty = dir.path().join("empty.pcap");
    std::fs::write(&empty, b"").expect("write");
    for f in [&junk, &empty] {
        let out = segwatch(&["analyze", s(f)]);
        refused(&out, &[s(f), "is a pcap or pcapng file"]);
    }
}

#[test]
fn corrupt_record_ends_the_file_and_keeps_what_was_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let udp = eth(0x0800, &ipv4(17, 0, &[0, 53, 0, 53, 0, 8, 0, 0]));
    let mut bytes = pcap(1, &[udp.clone(), udp.clone(), udp]);
    // The third record claims a captured length of 4 GiB.
    let third = 24 + 2 * (16 + 42);
    bytes[third + 8..third + 12].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
    let f = dir.path().join("bad-record.pcap");
    std::fs::write(&f, &bytes).expect("write");
    let summary = dir.path().join("summary.json");
    let out = segwatch(&["analyze", s(&f), "--summary-json", s(&summary)]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("input problem") && stdout.contains("bad-record.pcap"),
        "{stdout}"
    );
    assert!(stdout.contains("after 2 frames"), "{stdout}");
    assert_eq!(summary_json(&summary)["capture"]["frames"], 2);
}

#[test]
fn corrupt_pcapng_block_ends_the_file_and_keeps_what_was_read() {
    use segwatch::synth::pcap_file::{CaptureWriter, FileOptions, Format};
    let dir = tempfile::tempdir().expect("tempdir");
    let udp = eth(0x0800, &ipv4(17, 0, &[0, 53, 0, 53, 0, 8, 0, 0]));
    let opts = FileOptions {
        format: Format::PcapNg,
        ..FileOptions::default()
    };
    let mut w = CaptureWriter::new(Vec::new(), opts).expect("writer");
    for i in 0..3 {
        w.write(1_700_000_000_000_000_000 + i, &udp).expect("write");
    }
    let mut bytes = w.into_inner();
    // Overwrite the last block's length fields with a length that is not a
    // multiple of 4 and runs past the end of the file.
    let block_len = u32::from_le_bytes(bytes[bytes.len() - 4..].try_into().expect("4 bytes"));
    let last = bytes.len() - block_len as usize;
    bytes[last + 4..last + 8].copy_from_slice(&0x7fff_fff1u32.to_le_bytes());
    let f = dir.path().join("bad-block.pcapng");
    std::fs::write(&f, &bytes).expect("write");
    let out = segwatch(&["analyze", s(&f)]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("input problem") && stdout.contains("bad-block.pcapng"),
        "{stdout}"
    );
    assert!(stdout.contains("after 2 frames"), "{stdout}");
}

/// Exit 2 with the link type named: a run that decoded nothing must not look
/// like a clean one (it used to exit 0).
#[test]
fn capture_of_an_unsupported_link_type_is_counted_and_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let udp = ipv4(17, 0, &[0, 53, 0, 53, 0, 8, 0, 0]);
    // LINKTYPE_USER0 (147): libpcap reads it, segwatch cannot decode it.
    let f = dir.path().join("user0.pcap");
    std::fs::write(&f, pcap(147, &[udp.clone(), udp])).expect("write");
    let summary = dir.path().join("summary.json");
    let out = segwatch(&["analyze", s(&f), "--summary-json", s(&summary)]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("user0.pcap: link type 147 (USER0) is not one segwatch decodes"),
        "{stdout}"
    );
    let json = summary_json(&summary);
    assert_eq!(
        json["capture"]["decode_problems"]["unsupported_link_type"],
        2
    );
    assert!(
        json["capture"]["file_problems"][0]
            .as_str()
            .is_some_and(|p| p.contains("link type 147")),
        "{json}"
    );
}

#[test]
fn malformed_frames_of_each_layer_are_counted_by_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good_udp = eth(0x0800, &ipv4(17, 0, &[0, 53, 0, 53, 0, 8, 0, 0]));
    let mut bad_ihl = ipv4(6, 0, &[0; 20]);
    bad_ihl[0] = 0x41;
    let frames = [
        (vec![0u8; 10], "truncated_link"),
        (eth(0x88cc, &[0; 46]), "unsupported_ethertype"),
        (eth(0x0800, &[0x45, 0, 0, 40, 0, 0]), "truncated_ip"),
        (eth(0x0800, &bad_ihl), "malformed_ip"),
        (eth(0x0800, &ipv4(6, 0, &[0, 80])), "truncated_transport"),
        (
            eth(0x0800, &ipv4(17, 100, &[0; 16])),
            "fragment_unattributed",
        ),
        (eth(0x0806, &[0, 1, 8, 0, 6]), "malformed_arp"),
    ];
    let mut all: Vec<Vec<u8>> = frames.iter().map(|(f, _)| f.clone()).collect();
    all.push(good_udp);
    let f = dir.path().join("malformed.pcap");
    std::fs::write(&f, pcap(1, &all)).expect("write");
    let summary = dir.path().join("summary.json");
    let out = segwatch(&["analyze", s(&f), "--summary-json", s(&summary)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("decode problems  7 frames skipped"),
        "{stdout}"
    );
    let problems = &summary_json(&summary)["capture"]["decode_problems"];
    for (_, reason) in frames {
        assert_eq!(problems[reason], 1, "{reason}: {problems}");
    }
    // The one good frame still makes its flow.
    assert!(stdout.contains("flows by protocol"), "{stdout}");
}

#[test]
fn each_kind_of_bad_config_names_its_line_and_a_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: &[(&str, &str, &str)] = &[
        ("[pipeline\nworkers = 2\n", "bad.toml:1:", "unclosed table"),
        (
            "[pipeline]\nworkers = \"two\"\n",
            "bad.toml:2:11",
            "expected i64",
        ),
        ("[pipeline]\nworkerz = 2\n", "bad.toml:2:", "workerz"),
        ("\n[capturing]\n", "bad.toml:2:", "capturing"),
        (
            "[pipeline]\nworkers = 100000\n",
            "bad.toml:2:",
            "out of range",
        ),
        (
            "[metrics]\nlisten = \"localhost\"\n",
            "bad.toml:2:",
            "not an address",
        ),
        (
            "[[zone]]\nname = \"a\"\ncidrs = [\"10.0.0.0/33\"]\n",
            "bad.toml:3:",
            "10.0.0.0/33",
        ),
        (
            "[[rule]]\nfrom = \"nowhere\"\nto = \"any\"\naction = \"allow\"\n",
            "bad.toml:2:",
            "nowhere",
        ),
        (
            "[[allow]]\ndetectors = [\"telepathy\"]\nwhy = \"x\"\n",
            "bad.toml:2:",
            "unknown detector",
        ),
    ];
    for (body, at, needle) in cases {
        let cfg = dir.path().join("bad.toml");
        std::fs::write(&cfg, body).expect("write");
        let out = segwatch(&["check-config", s(&cfg)]);
        refused(&out, &[at, needle, "fix:"]);
    }
}

#[test]
fn unreadable_config_files_are_refused_naming_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.toml");
    let out = segwatch(&["check-config", s(&missing)]);
    refused(&out, &["missing.toml", "No such file", "fix:"]);
    let binary = dir.path().join("binary.toml");
    std::fs::write(&binary, [0xff, 0xfe, 0x00, 0x5b]).expect("write");
    let out = segwatch(&["check-config", s(&binary)]);
    refused(&out, &["binary.toml", "UTF-8", "fix:"]);
    let sample = repo("configs/sample/office.pcap");
    let out = segwatch(&["analyze", s(&sample), "-c", s(&missing)]);
    refused(&out, &["missing.toml"]);
}

#[test]
fn corrupt_baselines_are_refused_with_the_file_and_a_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sample = repo("configs/sample/office.pcap");
    let cases: &[(&str, &[&str])] = &[
        ("", &["b.json:1:", "fix:"]),
        ("\u{0}\u{1}garbage", &["b.json:1:", "fix:"]),
        (
            "{\n  \"schema\": \"segwatch-baseline\",\n  \"version\": 1,\n  \"learned\": [\n",
            &["b.json:5:1:", "EOF", "fix:"],
        ),
        (
            "{\"schema\": \"something-else\", \"version\": 1}",
            &["not a segwatch baseline", "fix:"],
        ),
        (
            "{\"schema\": \"segwatch-baseline\", \"version\": 9}",
            &["newer segwatch", "fix:"],
        ),
        (
            "{\"schema\": \"segwatch-baseline\", \"version\": 0}",
            &["not supported", "fix:"],
        ),
        (
            "{\"schema\": \"segwatch-baseline\", \"version\": 1, \"learned\": {}}",
            &["b.json:1:", "missing field", "fix:"],
        ),
    ];
    let b = dir.path().join("b.json");
    let flows = dir.path().join("flows.jsonl");
    let events = dir.path().join("events.jsonl");
    for (body, needles) in cases {
        std::fs::write(&b, body).expect("write");
        // Refused before any output file (finished or partial) is made.
        let out = segwatch(&[
            "analyze",
            s(&sample),
            "--baseline",
            s(&b),
            "-q",
            "--flows",
            s(&flows),
            "--events",
            s(&events),
        ]);
        refused(&out, needles);
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("b.json")]);
        let out = segwatch(&["baseline", "show", s(&b)]);
        refused(&out, needles);
    }
    let missing = dir.path().join("missing.json");
    let out = segwatch(&["analyze", s(&sample), "--baseline", s(&missing), "-q"]);
    refused(&out, &["missing.json", "No such file", "fix:"]);
}

#[test]
fn a_folder_given_as_a_file_is_refused_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let folder = dir.path().join("captures");
    std::fs::create_dir(&folder).expect("mkdir");
    let out = segwatch(&["analyze", s(&folder)]);
    refused(&out, &["captures", "is a pcap or pcapng file"]);
    let out = segwatch(&["check-config", s(&folder)]);
    refused(&out, &["captures"]);
}

#[test]
fn outputs_that_cannot_be_written_are_refused_naming_them() {
    // A path under a regular file cannot be created, even by root.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("plain");
    std::fs::write(&file, b"x").expect("write");
    let sample = repo("configs/sample/office.pcap");
    let cfg = repo("configs/sample/segwatch.toml");
    let under = file.join("out.json");
    let out = segwatch(&["learn", s(&sample), "-c", s(&cfg), "-o", s(&under), "-q"]);
    refused(&out, &["plain/out.json", "fix:"]);
    let flows = file.join("flows.jsonl");
    let out = segwatch(&["analyze", s(&sample), "--flows", s(&flows), "-q"]);
    refused(&out, &["plain/flows.jsonl", "fix:"]);
    let events = file.join("events.jsonl");
    let out = segwatch(&[
        "analyze",
        s(&sample),
        "-c",
        s(&cfg),
        "--events",
        s(&events),
        "-q",
    ]);
    refused(&out, &["plain/events.jsonl", "fix:"]);
}

/// Run segwatch as an unprivileged user: `nobody` through `setpriv` when
/// root (file modes do not stop root), as is otherwise. `None` (skip) when
/// root without setpriv.
fn unprivileged(args: &[&str]) -> Option<Output> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if text(&uid.stdout).trim() != "0" {
        return Some(segwatch(args));
    }
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(env!("CARGO_BIN_EXE_segwatch"))
        .args(args)
        .output()
        .ok()?;
    // setpriv itself failing (exit 127 or its own message) means no skip-free run.
    (!text(&out.stderr).starts_with("setpriv:")).then_some(out)
}

/// A temporary folder others may enter (tempdir makes it 0700).
fn open_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

#[test]
fn unreadable_capture_and_config_are_refused_naming_them() {
    use std::os::unix::fs::PermissionsExt;
    let dir = open_tempdir();
    let cap = dir.path().join("secret.pcap");
    std::fs::copy(repo("configs/sample/office.pcap"), &cap).expect("copy");
    std::fs::set_permissions(&cap, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let cfg = dir.path().join("secret.toml");
    std::fs::write(&cfg, "").expect("write");
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let Some(out) = unprivileged(&["analyze", s(&cap)]) else {
        eprintln!("SKIPPED: root without setpriv cannot drop privileges");
        return;
    };
    refused(&out, &["secret.pcap", "ermission denied", "is readable"]);
    let Some(out) = unprivileged(&["check-config", s(&cfg)]) else {
        return;
    };
    refused(&out, &["secret.toml", "ermission denied", "fix:"]);
}

#[test]
fn baseline_into_a_read_only_folder_is_refused_naming_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = open_tempdir();
    let cap = dir.path().join("office.pcap");
    std::fs::copy(repo("configs/sample/office.pcap"), &cap).expect("copy");
    let cfg = dir.path().join("segwatch.toml");
    std::fs::copy(repo("configs/sample/segwatch.toml"), &cfg).expect("copy");
    for f in [&cap, &cfg] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    let ro = dir.path().join("read-only");
    std::fs::create_dir(&ro).expect("mkdir");
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).expect("chmod");
    let out_file = ro.join("base.json");
    let Some(out) = unprivileged(&["learn", s(&cap), "-c", s(&cfg), "-o", s(&out_file)]) else {
        eprintln!("SKIPPED: root without setpriv cannot drop privileges");
        return;
    };
    refused(&out, &["read-only/base.json", "ermission denied", "fix:"]);
    // Refused before learning, not after: no run summary.
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    assert!(!out_file.exists());
}

#[test]
fn live_capture_without_privileges_says_what_to_grant() {
    let Some(out) = unprivileged(&["run", "--interface", "lo"]) else {
        eprintln!("SKIPPED: root without setpriv cannot drop privileges");
        return;
    };
    refused(&out, &["lo", "CAP_NET_RAW", "setcap"]);
}

#[test]
fn missing_interface_is_named_with_how_to_list_interfaces() {
    let out = segwatch(&["run", "--allow-root", "--interface", "segwatch-nope0"]);
    refused(&out, &["segwatch-nope0", "ip link"]);
}
