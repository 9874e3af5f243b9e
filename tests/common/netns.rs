//! Network namespaces for the live tests: one namespace with only its
//! loopback, two joined by a veth pair ([`Pair`]), or a routed client and
//! server whose router mirrors every packet to a monitor namespace, as a
//! switch does to a SPAN port ([`MirrorLab`]). Everything is removed when the
//! value is dropped, however the test ends.
//!
//! Names carry the test's tag and the process id, so tests running at once
//! (nextest processes, or `cargo test` threads with different tags) do not
//! collide. Addresses come from 198.18.0.0/15 only, and no namespace has a
//! default route: nothing a test sends can leave the namespaces it made.

use std::process::{Child, Command, Stdio};

/// Run a set-up command quietly; a failure is printed, so a skip or a
/// failing test says which step went wrong.
pub fn run(program: &str, args: &[&str]) -> bool {
    let out = Command::new(program).args(args).output();
    let ok = out.as_ref().is_ok_and(|o| o.status.success());
    if !ok {
        let why = out.map_or_else(
            |e| e.to_string(),
            |o| String::from_utf8_lossy(&o.stderr).into_owned(),
        );
        eprintln!("failed: {program} {}: {}", args.join(" "), why.trim());
    }
    ok
}

pub struct Netns(pub String);

impl Netns {
    /// A namespace `sgw{tag}{pid}` with its loopback up; `None` where
    /// namespaces cannot be made (not root, no iproute2).
    pub fn create(tag: &str) -> Option<Netns> {
        let name = format!("sgw{tag}{}", std::process::id());
        // Left over by a run that was killed before it could clean up.
        if std::path::Path::new("/run/netns").join(&name).exists() {
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
        }
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return None;
        }
        let ns = Netns(name);
        ns.ip(&["link", "set", "lo", "up"]).then_some(ns)
    }

    /// `program` to be run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0, program]);
        c
    }

    /// `ip ARGS` inside the namespace (a set-up step: failures are printed).
    pub fn ip(&self, args: &[&str]) -> bool {
        let mut v = vec!["-n", self.0.as_str()];
        v.extend_from_slice(args);
        run("ip", &v)
    }

    /// A set-up command inside the namespace (failures are printed).
    pub fn run(&self, program: &str, args: &[&str]) -> bool {
        let mut v = vec!["netns", "exec", self.0.as_str(), program];
        v.extend_from_slice(args);
        run("ip", &v)
    }

    /// Set a sysctl inside the namespace.
    pub fn sysctl(&self, setting: &str) -> bool {
        self.run("sysctl", &["-q", "-w", setting])
    }

    /// GET a URL inside the namespace; the body, or None.
    pub fn get(&self, url: &str) -> Option<String> {
        let out = self
            .command("python3")
            .args([
                "-c",
                "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())",
                url,
            ])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A veth pair from `a_dev` in `a` to `b_dev` in `b`, both ends up.
pub fn veth(a: &Netns, a_dev: &str, b: &Netns, b_dev: &str) -> bool {
    run(
        "ip",
        &[
            "link", "add", a_dev, "netns", &a.0, "type", "veth", "peer", "name", b_dev, "netns",
            &b.0,
        ],
    ) && a.ip(&["link", "set", a_dev, "up"])
        && b.ip(&["link", "set", b_dev, "up"])
}

/// Two hosts on one link: `a` is `{net}.1/24` on `veth_a`, `b` is
/// `{net}.2/24` on `veth_b` (`net` such as `"198.18.77"`).
pub struct Pair {
    pub a: Netns,
    pub b: Netns,
    pub veth_a: String,
    pub veth_b: String,
}

impl Pair {
    pub fn create(tag: &str, net: &str) -> Option<Pair> {
        let pair = Pair {
            a: Netns::create(&format!("{tag}a"))?,
            b: Netns::create(&format!("{tag}b"))?,
            veth_a: "sgwa".into(),
            veth_b: "sgwb".into(),
        };
        let ok = veth(&pair.a, &pair.veth_a, &pair.b, &pair.veth_b)
            && pair
                .a
                .ip(&["addr", "add", &format!("{net}.1/24"), "dev", &pair.veth_a])
            && pair
                .b
                .ip(&["addr", "add", &format!("{net}.2/24"), "dev", &pair.veth_b]);
        ok.then_some(pair)
    }
}

/// A routed network seen through a mirror port:
///
/// ```text
///  client 198.18.1.2 ──cli── rt-cli┐        ┌rt-srv ──srv── 198.18.2.2 server
///                                  router (forwarding)
///                              rt-mir ──mirror  monitor (no address)
/// ```
///
/// Every frame entering the router, on either side, is copied by `tc`
/// (clsact ingress, `mirred egress mirror`) to `rt-mir`, so each packet of a
/// conversation is seen once on `mirror`, in the monitor namespace, where
/// the sensor captures as it would on a SPAN port. Frames sent from the
/// client that are not for the router's MAC (a replayed capture) are
/// mirrored and then dropped by the router. The hosts have a route to each
/// other's /24 only, and the router has only its two connected /24s, so
/// spoofed or replayed addresses go nowhere. IPv6 is off, so the mirror
/// carries only what the test sends (no neighbour discovery noise).
pub struct MirrorLab {
    pub client: Netns,
    pub server: Netns,
    pub router: Netns,
    pub monitor: Netns,
}

impl MirrorLab {
    pub const CLIENT_IP: &'static str = "198.18.1.2";
    pub const SERVER_IP: &'static str = "198.18.2.2";
    /// The client's interface (replay onto it to reach the mirror).
    pub const CLIENT_IF: &'static str = "cli";
    pub const SERVER_IF: &'static str = "srv";
    /// Where the sensor captures, in the monitor namespace.
    pub const MIRROR_IF: &'static str = "mirror";

    /// Namespaces `sgw{tag}{cli,srv,rtr,mon}{pid}`; `None` (with the failing
    /// step printed) where namespaces, veth or tc are not available.
    pub fn build(tag: &str) -> Option<MirrorLab> {
        let lab = MirrorLab {
            client: Netns::create(&format!("{tag}cli"))?,
            server: Netns::create(&format!("{tag}srv"))?,
            router: Netns::create(&format!("{tag}rtr"))?,
            monitor: Netns::create(&format!("{tag}mon"))?,
        };
        for ns in [&lab.client, &lab.server, &lab.router, &lab.monitor] {
            if !(ns.sysctl("net.ipv6.conf.all.disable_ipv6=1")
                && ns.sysctl("net.ipv6.conf.default.disable_ipv6=1"))
            {
                return None;
            }
        }
        let r = &lab.router;
        let ok = veth(&lab.client, Self::CLIENT_IF, r, "rt-cli")
            && veth(&lab.server, Self::SERVER_IF, r, "rt-srv")
            && veth(r, "rt-mir", &lab.monitor, Self::MIRROR_IF)
            && lab.client.ip(&[
                "addr",
                "add",
                "198.18.1.2/24",
                "dev",
                Self::CLIENT_IF,
            ])
            && lab.server.ip(&[
                "addr",
                "add",
                "198.18.2.2/24",
                "dev",
                Self::SERVER_IF,
            ])
            && r.ip(&["addr", "add", "198.18.1.1/24", "dev", "rt-cli"])
            && r.ip(&["addr", "add", "198.18.2.1/24", "dev", "rt-srv"])
            && lab
                .client
                .ip(&["route", "add", "198.18.2.0/24", "via", "198.18.1.1"])
            && lab
                .server
                .ip(&["route", "add", "198.18.1.0/24", "via", "198.18.2.1"])
            && r.sysctl("net.ipv4.ip_forward=1")
            // Spoofed sources (a SYN flood) must still reach the server.
            && r.sysctl("net.ipv4.conf.all.rp_filter=0")
            && r.sysctl("net.ipv4.conf.default.rp_filter=0")
            && r.sysctl("net.ipv4.conf.rt-cli.rp_filter=0");
        if !ok {
            return None;
        }
        for dev in ["rt-cli", "rt-srv"] {
            // A u32 filter that matches everything: older than matchall
            // and present in more kernels.
            let ok = r.run("tc", &["qdisc", "add", "dev", dev, "clsact"])
                && r.run(
                    "tc",
                    &[
                        "filter", "add", "dev", dev, "ingress", "protocol", "all", "u32", "match",
                        "u32", "0", "0", "action", "mirred", "egress", "mirror", "dev", "rt-mir",
                    ],
                );
            if !ok {
                return None;
            }
        }
        Some(lab)
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
