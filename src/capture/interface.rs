//! The state of a capture interface, read without privileges: whether its
//! name still names the interface the capture was opened on (a deleted and
//! re-created interface gets a new index, and a packet socket bound to the old
//! one never sees another packet), whether it is administratively up, and
//! whether it has a carrier.
//!
//! libpcap does not say any of this in non-blocking mode: on Linux a packet
//! socket whose interface goes down or away only raises an error that
//! libpcap's own poll swallows, and then stays silent.

use std::os::fd::AsFd;

use rustix::io::Errno;

/// What [`state`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterfaceState {
    /// No interface has the name any more.
    Gone,
    /// The name now belongs to another interface (it was re-created).
    Replaced,
    /// Administratively down (`ip link set IF down`).
    AdminDown,
    /// Up, without a carrier (cable out, the far end of a veth down).
    NoCarrier,
    /// Up with a carrier, or as far as can be told.
    Up,
}

/// IFF_UP in an interface's flags.
const IFF_UP: u32 = 0x1;

/// The interface's index, asked on a socket of the capture's network
/// namespace; `None` when no interface has the name.
pub fn index(socket: impl AsFd, name: &str) -> Option<u32> {
    match rustix::net::netdevice::name_to_index(socket, name) {
        Ok(i) => Some(i),
        Err(Errno::NODEV | Errno::NXIO) => None,
        // Any other answer tells nothing about the interface: assume it is
        // still there rather than close a working capture.
        Err(_) => Some(0),
    }
}

/// The state of `name`, which had index `opened` when the capture opened
/// (0: no index, as for libpcap's `any`, which is no interface of its own
/// and is taken to be up).
pub fn state(socket: impl AsFd, name: &str, opened: u32) -> InterfaceState {
    if opened == 0 {
        return InterfaceState::Up;
    }
    match index(socket, name) {
        None => return InterfaceState::Gone,
        Some(i) if i != 0 && opened != 0 && i != opened => return InterfaceState::Replaced,
        Some(_) => {}
    }
    link_state(name, opened)
}

/// Whether opening `name` is worth a try: it exists and is not set down.
pub fn usable(socket: impl AsFd, name: &str) -> bool {
    index(socket, name).is_some_and(|i| link_state(name, i) != InterfaceState::AdminDown)
}

/// Up and carrier from sysfs, when the sysfs mounted here is of the
/// capture's network namespace (same index); `Up` when that cannot be told.
fn link_state(name: &str, opened: u32) -> InterfaceState {
    if name.contains('/') || name.starts_with('.') {
        return InterfaceState::Up;
    }
    let dir = std::path::Path::new("/sys/class/net").join(name);
    let read = |file: &str| std::fs::read_to_string(dir.join(file)).unwrap_or_default();
    if read("ifindex").trim().parse::<u32>().ok() != Some(opened) {
        return InterfaceState::Up;
    }
    let flags = u32::from_str_radix(read("flags").trim().trim_start_matches("0x"), 16);
    if flags.is_ok_and(|f| f & IFF_UP == 0) {
        return InterfaceState::AdminDown;
    }
    match read("operstate").trim() {
        // "unknown": drivers that do not report it (loopback, tun).
        "up" | "unknown" | "" => InterfaceState::Up,
        _ => InterfaceState::NoCarrier,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_up_and_a_missing_name_is_gone() {
        let Ok(sock) = rustix::net::socket(
            rustix::net::AddressFamily::INET,
            rustix::net::SocketType::DGRAM,
            None,
        ) else {
            return;
        };
        let Some(lo) = index(&sock, "lo") else {
            panic!("no lo");
        };
        assert!(lo > 0);
        assert_eq!(state(&sock, "lo", lo), InterfaceState::Up);
        assert_eq!(state(&sock, "sgw-none0", lo), InterfaceState::Gone);
        assert_eq!(state(&sock, "lo", lo + 1000), InterfaceState::Replaced);
        assert_eq!(state(&sock, "any", 0), InterfaceState::Up);
        assert!(usable(&sock, "lo"));
        assert!(!usable(&sock, "sgw-none0"));
    }
}
