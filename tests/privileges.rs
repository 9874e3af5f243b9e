//! `segwatch run` opens the capture as root, then drops to an unprivileged
//! user that keeps only CAP_NET_RAW and CAP_NET_ADMIN, in every thread; as
//! root without a user it refuses to run. Root only (skipped, with a message,
//! otherwise): the capture runs in network namespaces of the test's own
//! (198.18.92.0/24).

mod common;

use std::os::unix::fs::MetadataExt;
use std::process::Stdio;
use std::time::Duration;

use common::netns::{Killed, Netns, VethPair};
use nix::unistd::{Uid, User};

/// CAP_NET_ADMIN (12) and CAP_NET_RAW (13), as /proc/PID/status shows them.
const NET_RAW_AND_ADMIN: &str = "0000000000003000";

fn nobody() -> Option<User> {
    if !Uid::effective().is_root() {
        eprintln!("skipped: dropping privileges needs root");
        return None;
    }
    let user = User::from_name("nobody").ok().flatten();
    if user.is_none() {
        eprintln!("skipped: no user nobody on this system");
    }
    user
}

/// `Key:` lines of a /proc status file.
fn field<'a>(status: &'a str, key: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map_or("", str::trim)
}

#[test]
fn drops_to_nobody_in_every_thread_and_keeps_capturing() {
    let Some(nobody) = nobody() else { return };
    let Some(net) = VethPair::create("svcp", 92) else {
        eprintln!("skipped: cannot create network namespaces here (needs iproute2)");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    // The state folder belongs to the user, as StateDirectory= makes it.
    std::os::unix::fs::chown(dir.path(), Some(nobody.uid.as_raw()), None).expect("chown");
    let flows = dir.path().join("flows.jsonl");
    let mut sensor = Killed(
        net.b
            .command(env!("CARGO_BIN_EXE_segwatch"))
            .args(["run", "--interface", &net.veth_b, "--user", "nobody"])
            .args(["--quiet", "--metrics-listen", "127.0.0.1:19951"])
            .arg("--flows")
            .arg(&flows)
            .stderr(Stdio::piped())
            .spawn()
            .expect("start segwatch run"),
    );
    std::thread::sleep(Duration::from_millis(1500));
    // `ip netns exec` executes segwatch in its own process: the PID is segwatch's.
    let pid = sensor.0.id();
    let tasks: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("tasks")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("status")).ok())
        .collect();
    // The reader, a worker and the metrics server at least.
    assert!(tasks.len() >= 3, "{} threads", tasks.len());
    let (uid, gid) = (nobody.uid.to_string(), nobody.gid.to_string());
    for status in &tasks {
        let name = field(status, "Name:");
        assert_eq!(
            field(status, "Uid:").split_whitespace().collect::<Vec<_>>(),
            [uid.as_str(); 4],
            "{name}"
        );
        assert_eq!(
            field(status, "Gid:").split_whitespace().collect::<Vec<_>>(),
            [gid.as_str(); 4],
            "{name}"
        );
        assert_eq!(field(status, "Groups:"), gid, "{name}");
        for set in ["CapEff:", "CapPrm:", "CapBnd:"] {
            assert_eq!(field(status, set), NET_RAW_AND_ADMIN, "{name} {set}");
        }
        for set in ["CapInh:", "CapAmb:"] {
            assert_eq!(field(status, set), "0000000000000000", "{name} {set}");
        }
        assert_eq!(field(status, "NoNewPrivs:"), "1", "{name}");
    }
    // Still capturing: a UDP probe to a closed port, refused by ICMP.
    udp_probe(&net);
    std::thread::sleep(Duration::from_millis(300));
    let (status, err) = common::stop(&mut sensor.0, "TERM", Duration::from_secs(5));
    assert!(status.success(), "{err}");
    let text = std::fs::read_to_string(&flows).expect("flows");
    assert!(
        text.lines()
            .any(|l| l.contains(&format!("\"src_ip\":\"{}\"", net.addr(1)))
                && l.contains("\"dst_port\":9")
                && l.contains("\"outcome\":\"rejected\"")),
        "{text}\n{err}"
    );
    assert_eq!(
        std::fs::metadata(&flows).expect("flows").uid(),
        nobody.uid.as_raw(),
        "written by the user"
    );
}

#[test]
fn root_without_a_user_is_refused_and_names_the_fix() {
    if nobody().is_none() {
        return;
    }
    // Refused before the interface is touched: it need not exist.
    let run = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_segwatch"))
            .args(["run", "--interface", "sgwsvc-none0", "--no-metrics"])
            .args(extra)
            .output()
            .expect("segwatch")
    };
    let out = run(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("refusing to run as root")
            && err.contains("--user USER")
            && err.contains("--allow-root"),
        "{err}"
    );
    let out = run(&["--user", "sgw-no-such-user"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("no user named \"sgw-no-such-user\" (--user)") && err.contains("useradd"),
        "{err}"
    );
    // root is not a user to drop to.
    let out = run(&["--user", "root"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is root itself"), "{err}");
    // With --allow-root the interface is what fails.
    let out = run(&["--allow-root"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot open interface sgwsvc-none0"), "{err}");
}

#[test]
fn outputs_the_user_cannot_write_are_named_with_the_fix() {
    if nobody().is_none() {
        return;
    }
    let Some(ns) = Netns::create("svcw") else {
        eprintln!("skipped: cannot create network namespaces here (needs iproute2)");
        return;
    };
    // A folder only root may write to (tempdir makes it 0700).
    let dir = tempfile::tempdir().expect("tempdir");
    let flows = dir.path().join("flows.jsonl");
    let out = ns
        .command(env!("CARGO_BIN_EXE_segwatch"))
        .args(["run", "-i", "lo", "--no-metrics", "--user", "nobody"])
        .arg("--flows")
        .arg(&flows)
        .output()
        .expect("segwatch");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "runs as user nobody, who cannot write the flow records {}",
            flows.display()
        )) && err.contains(&format!("chown nobody {}", dir.path().display()))
            && err.contains("StateDirectory=segwatch"),
        "{err}"
    );
}

/// The systemd unit's way: started as nobody with only the two capabilities
/// as ambient ones (what `User=` and `AmbientCapabilities=` give), segwatch
/// has nothing to drop, `--user nobody` agrees with who it is, and it
/// captures.
#[test]
fn started_unprivileged_with_ambient_capabilities_it_captures() {
    let Some(nobody) = nobody() else { return };
    if !common::has("setpriv") {
        eprintln!("skipped: setpriv (util-linux) is missing");
        return;
    }
    let Some(net) = VethPair::create("svcm", 94) else {
        eprintln!("skipped: cannot create network namespaces here (needs iproute2)");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::chown(dir.path(), Some(nobody.uid.as_raw()), None).expect("chown");
    let flows = dir.path().join("flows.jsonl");
    let caps = "+net_raw,+net_admin";
    let mut sensor = Killed(
        net.b
            .command("setpriv")
            .args(["--reuid", "nobody", "--regid", &nobody.gid.to_string()])
            .args(["--init-groups", "--inh-caps", caps, "--ambient-caps", caps])
            .args(["--bounding-set", &format!("-all,{caps}"), "--no-new-privs"])
            .arg(env!("CARGO_BIN_EXE_segwatch"))
            .args(["run", "--interface", &net.veth_b, "--user", "nobody"])
            .args(["--quiet", "--no-metrics"])
            .arg("--flows")
            .arg(&flows)
            .stderr(Stdio::piped())
            .spawn()
            .expect("start segwatch run"),
    );
    std::thread::sleep(Duration::from_millis(1200));
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", sensor.0.id())).expect("status");
    assert_eq!(field(&status, "CapEff:"), NET_RAW_AND_ADMIN);
    udp_probe(&net);
    std::thread::sleep(Duration::from_millis(300));
    let (status, err) = common::stop(&mut sensor.0, "TERM", Duration::from_secs(5));
    assert!(status.success(), "{err}");
    // Nothing to give up, so no capset (the unit's system call filter forbids it).
    assert!(!err.contains("cannot give up capabilities"), "{err}");
    let text = std::fs::read_to_string(&flows).expect("flows");
    assert!(text.contains("\"dst_port\":9"), "{text}\n{err}");
}

/// A UDP datagram from host a to a closed port on host b (refused by ICMP):
/// traffic the sensor must still see after dropping privileges.
fn udp_probe(net: &VethPair) {
    let probe = format!(
        "import socket\nu=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nu.sendto(b'x'*10,('{}',9))\n",
        net.addr(2)
    );
    assert!(
        net.a
            .command("python3")
            .args(["-c", &probe])
            .status()
            .expect("python3")
            .success()
    );
}
