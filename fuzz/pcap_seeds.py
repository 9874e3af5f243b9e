#!/usr/bin/env python3
"""Seeds from classic pcap files (little- or big-endian, µs or ns).

decode_frame: one file per distinct frame shape (link type, length, the
bytes that pick the next header), in the target's input form: a link-type
selector byte, four zero bytes (wire length = captured length), the frame.
pcap_file: the first records of each capture as a small pcap file.

usage: pcap_seeds.py DECODE_DIR PCAP_DIR MAX_PER_FILE FILE.pcap...
"""
import hashlib
import struct
import sys
from pathlib import Path

# Must match LINKS in fuzz_targets/decode_frame.rs.
LINKS = [1, 113, 276, 101, 228, 0, 108, 147]
HEAD_RECORDS = 24


def records(data):
    magic = data[:4]
    endian = {b"\xd4\xc3\xb2\xa1": "<", b"\x4d\x3c\xb2\xa1": "<",
              b"\xa1\xb2\xc3\xd4": ">", b"\xa1\xb2\x3c\x4d": ">"}.get(magic)
    if endian is None:
        raise ValueError("not a classic pcap file")
    link = struct.unpack(endian + "I", data[20:24])[0] & 0xFFFF
    off = 24
    while off + 16 <= len(data):
        incl = struct.unpack(endian + "I", data[off + 8:off + 12])[0]
        end = off + 16 + incl
        if end > len(data):
            break
        yield link, data[off:end], data[off + 16:end]
        off = end


def shape(link, frame):
    # Ethertype (after up to two VLAN tags), IP protocol and header lengths:
    # frames alike in these decode alike.
    return (link, len(frame) // 64, frame[12:14], frame[16:18], frame[14:15], frame[23:24])


def other_links(link, frame):
    """The same IP packet under the other link types segwatch decodes."""
    if link != 1 or frame[12:14] not in (b"\x08\x00", b"\x86\xdd"):
        return []
    proto, ip = frame[12:14], frame[14:]
    family = b"\x02\0\0\0" if proto == b"\x08\x00" else b"\x0a\0\0\0"
    sll = b"\0\0\0\x01\0\x06" + frame[6:12] + b"\0\0" + proto
    sll2 = proto + b"\0\0" + b"\0\0\0\x02" + b"\0\x01\0\x06" + frame[6:12] + b"\0\0"
    return [(113, sll + ip), (276, sll2 + ip), (101, ip), (0, family + ip)]


def main():
    decode_dir, pcap_dir, limit = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    decode_dir.mkdir(parents=True, exist_ok=True)
    pcap_dir.mkdir(parents=True, exist_ok=True)
    for name in sys.argv[4:]:
        data = Path(name).read_bytes()
        seen, kept, head = set(), 0, [data[:24]]
        for i, (link, record, frame) in enumerate(records(data)):
            if i < HEAD_RECORDS:
                head.append(record)
            key = shape(link, frame)
            if key in seen or kept >= limit or link not in LINKS:
                continue
            seen.add(key)
            kept += 1
            for l, f in [(link, frame)] + other_links(link, frame):
                seed = bytes([LINKS.index(l)]) + b"\0\0\0\0" + f
                (decode_dir / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
        out = pcap_dir / (Path(name).stem + ".pcap")
        out.write_bytes(b"".join(head))
        print(f"{name}: {kept} frame seeds, {len(head) - 1} records in {out}")


if __name__ == "__main__":
    main()
