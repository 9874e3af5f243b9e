//! A network namespace of a test's own (only its loopback, up), and a child
//! process that is killed when the test ends, however it ends.

use std::process::{Child, Command};

pub struct Netns(pub String);

impl Netns {
    /// `None` where namespaces cannot be made (not root, no iproute2).
    pub fn create(tag: &str) -> Option<Netns> {
        let name = format!("sgw{tag}{}", std::process::id() % 100_000);
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return None;
        }
        let ns = Netns(name);
        ns.command("ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .ok()
            .filter(|s| s.success())?;
        Some(ns)
    }

    /// `program` to be run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0, program]);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Two namespaces of a test's own joined by a veth pair: `a` (198.18.X.1/24 on
/// `veth_a`) and `b` (198.18.X.2/24 on `veth_b`), X picked by the caller.
/// The pair can be set down and up, deleted and re-created under the same
/// names, to test what a capture on `veth_b` does meanwhile.
pub struct VethPair {
    pub a: Netns,
    pub b: Netns,
    pub veth_a: String,
    pub veth_b: String,
    /// Third octet of 198.18.X.0/24.
    pub subnet: u8,
}

impl VethPair {
    /// `None` where namespaces cannot be made (not root, no iproute2).
    pub fn create(tag: &str, subnet: u8) -> Option<VethPair> {
        let id = std::process::id() % 100_000;
        let pair = VethPair {
            a: Netns::create(&format!("{tag}a"))?,
            b: Netns::create(&format!("{tag}b"))?,
            veth_a: format!("{tag}a{id}"),
            veth_b: format!("{tag}b{id}"),
            subnet,
        };
        pair.link().then_some(pair)
    }

    /// The address of host `host` (1: a, 2: b).
    pub fn addr(&self, host: u8) -> String {
        format!("198.18.{}.{host}", self.subnet)
    }

    /// Create the veth pair (again), with addresses, up.
    pub fn link(&self) -> bool {
        let (a, b) = (&self.a.0, &self.b.0);
        let (va, vb) = (&self.veth_a, &self.veth_b);
        ip(
            None,
            &[
                "link", "add", va, "netns", a, "type", "veth", "peer", "name", vb, "netns", b,
            ],
        ) && ip(
            Some(a),
            &["addr", "add", &format!("{}/24", self.addr(1)), "dev", va],
        ) && ip(
            Some(b),
            &["addr", "add", &format!("{}/24", self.addr(2)), "dev", vb],
        ) && ip(Some(a), &["link", "set", va, "up"])
            && ip(Some(b), &["link", "set", vb, "up"])
    }

    /// `ip link set veth_b up|down`.
    pub fn set_b(&self, state: &str) -> bool {
        ip(Some(&self.b.0), &["link", "set", &self.veth_b, state])
    }

    /// Delete the pair (both ends go).
    pub fn unlink(&self) -> bool {
        ip(Some(&self.b.0), &["link", "del", &self.veth_b])
    }
}

/// `ip [-n NS] ARGS...`, quietly; whether it succeeded.
pub fn ip(ns: Option<&str>, args: &[&str]) -> bool {
    let mut c = Command::new("ip");
    if let Some(ns) = ns {
        c.args(["-n", ns]);
    }
    c.args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
