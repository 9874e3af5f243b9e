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
