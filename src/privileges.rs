//! Who `segwatch run` is once the capture is open: it opens the interface as
//! root (or with `CAP_NET_RAW` and `CAP_NET_ADMIN`), then becomes an
//! unprivileged user that keeps only those two capabilities, so that it can
//! reopen the interface after it went down or was re-created
//! ([`crate::capture::live`]) and nothing more.
//!
//! Invariants: the drop happens while the process has one thread (Linux
//! credentials and capabilities belong to a thread; threads spawned later
//! inherit them), so every thread that touches packets, files or the network
//! runs as the user; and running as root past the drop needs an explicit
//! `allow_root`. Names are resolved before the capture opens, so a misspelt
//! user stops segwatch before it touches the interface.
//!
//! `nix` changes the user and groups (through the C library, which applies
//! them to every thread); `rustix` sets the capabilities and `prctl` flags,
//! which the C library does not wrap.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Group, Uid, User};
use rustix::thread::{CapabilitySet, CapabilitySets};
use thiserror::Error;

/// The capabilities kept after the drop: open (and reopen) a packet socket,
/// and set promiscuous mode and the ring buffer on it.
pub const KEPT: CapabilitySet = CapabilitySet::NET_RAW.union(CapabilitySet::NET_ADMIN);

/// A user or group name and where it was given (for messages).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Named {
    pub name: String,
    /// `--user`, or `FILE:LINE: service.user`.
    pub origin: String,
}

/// The `[service]` settings, validated (see `config`), with the command
/// line's `--user`, `--group` and `--allow-root` applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceOptions {
    /// Become this user once the capture is open.
    pub user: Option<Named>,
    /// Primary group (default: the user's own).
    pub group: Option<Named>,
    /// Started as root without a user: keep running as root instead of
    /// refusing.
    pub allow_root: bool,
}

/// A privilege problem a user can fix.
#[derive(Debug, Error)]
pub enum PrivilegeError {
    #[error(
        "refusing to run as root: segwatch opens the capture as root, then drops to an unprivileged user, and no user is named\n  fix: pass --user USER (for example --user nobody, or a dedicated segwatch user, see README \"Install as a service\"), or set user in the [service] section of the config; --allow-root (or [service] allow_root = true) keeps running as root"
    )]
    RootRefused,
    #[error(
        "refusing to run as root: the user to drop to, {name} ({origin}), is root itself\n  fix: name an unprivileged user, or pass --allow-root (or [service] allow_root = true) to run as root on purpose"
    )]
    UserIsRoot { name: String, origin: String },
    #[error(
        "there is no {kind} named {name:?} ({origin})\n  fix: create it (systemd-sysusers configs/segwatch.sysusers, or useradd --system --user-group --no-create-home --shell /usr/sbin/nologin segwatch) or name an existing one"
    )]
    Unknown {
        kind: &'static str,
        name: String,
        origin: String,
    },
    #[error("cannot look up {kind} {name:?}: {reason}")]
    Lookup {
        kind: &'static str,
        name: String,
        reason: String,
    },
    #[error(
        "{origin} asks for user {name}, but segwatch runs as uid {uid} and only root can change user\n  fix: start segwatch as root (it drops to {name} once the capture is open), or drop the option: with CAP_NET_RAW and CAP_NET_ADMIN (setcap, or AmbientCapabilities= in systemd) segwatch needs no root"
    )]
    NotRoot {
        name: String,
        origin: String,
        uid: u32,
    },
    #[error(
        "service.group ({origin}) needs a user to drop to\n  fix: name the user too (--user or [service] user); the group replaces that user's primary group"
    )]
    GroupWithoutUser { origin: String },
    #[error(
        "cannot drop privileges: {threads} threads are running, and a drop would change only one of them"
    )]
    Threads { threads: usize },
    #[error("cannot drop privileges to user {user}: {step} failed: {reason}")]
    Drop {
        user: String,
        step: &'static str,
        reason: String,
    },
    #[error(
        "after opening the capture segwatch runs as user {user}, who cannot write {what} {path}: {reason}\n  fix: give {user} the folder (chown {user} {folder}), or write under a folder it owns, such as /var/lib/segwatch (StateDirectory=segwatch in the systemd unit)"
    )]
    NotWritable {
        user: String,
        what: &'static str,
        path: PathBuf,
        folder: PathBuf,
        reason: String,
    },
}

/// The user to become, resolved to IDs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub uid: Uid,
    pub gid: Gid,
    /// Supplementary groups: the user's groups in the group database (as a
    /// login would give them), with `gid`.
    pub groups: Vec<Gid>,
}

/// What to do once the capture is open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Not started as root: nothing to drop but capabilities beyond
    /// [`KEPT`] (systemd `AmbientCapabilities=`, or `setcap`).
    Unprivileged,
    /// Started as root, and told to stay root.
    StayRoot,
    /// Started as root: become this user.
    Become(Identity),
}

/// Decide, before the capture opens, what [`drop_privileges`] will do.
pub fn plan(opts: &ServiceOptions) -> Result<Plan, PrivilegeError> {
    let root = Uid::effective().is_root();
    let Some(user) = &opts.user else {
        if let Some(g) = &opts.group {
            return Err(PrivilegeError::GroupWithoutUser {
                origin: g.origin.clone(),
            });
        }
        return match (root, opts.allow_root) {
            (false, _) => Ok(Plan::Unprivileged),
            (true, true) => Ok(Plan::StayRoot),
            (true, false) => Err(PrivilegeError::RootRefused),
        };
    };
    let entry = lookup_user(user)?;
    if !root {
        // Already the user (systemd's User= with the same name in the config).
        return if entry.uid == Uid::current() {
            Ok(Plan::Unprivileged)
        } else {
            Err(PrivilegeError::NotRoot {
                name: user.name.clone(),
                origin: user.origin.clone(),
                uid: Uid::current().as_raw(),
            })
        };
    }
    if entry.uid.is_root() {
        return if opts.allow_root {
            Ok(Plan::StayRoot)
        } else {
            Err(PrivilegeError::UserIsRoot {
                name: user.name.clone(),
                origin: user.origin.clone(),
            })
        };
    }
    let gid = match &opts.group {
        Some(g) => lookup_group(g)?,
        None => entry.gid,
    };
    let lookup_err = |e: nix::Error| PrivilegeError::Lookup {
        kind: "the groups of user",
        name: entry.name.clone(),
        reason: e.to_string(),
    };
    let cname = CString::new(entry.name.clone()).map_err(|e| PrivilegeError::Lookup {
        kind: "user",
        name: entry.name.clone(),
        reason: e.to_string(),
    })?;
    let mut groups = nix::unistd::getgrouplist(&cname, gid).map_err(lookup_err)?;
    groups.sort_by_key(|g| g.as_raw());
    groups.dedup();
    Ok(Plan::Become(Identity {
        user: entry.name,
        uid: entry.uid,
        gid,
        groups,
    }))
}

/// A name, or a number for an ID without a name.
fn lookup_user(n: &Named) -> Result<User, PrivilegeError> {
    let found = match n.name.parse::<u32>() {
        Ok(id) => User::from_uid(Uid::from_raw(id)),
        Err(_) => User::from_name(&n.name),
    };
    found
        .map_err(|e| PrivilegeError::Lookup {
            kind: "user",
            name: n.name.clone(),
            reason: e.to_string(),
        })?
        .ok_or_else(|| PrivilegeError::Unknown {
            kind: "user",
            name: n.name.clone(),
            origin: n.origin.clone(),
        })
}

fn lookup_group(n: &Named) -> Result<Gid, PrivilegeError> {
    let found = match n.name.parse::<u32>() {
        Ok(id) => Group::from_gid(Gid::from_raw(id)),
        Err(_) => Group::from_name(&n.name),
    };
    found
        .map_err(|e| PrivilegeError::Lookup {
            kind: "group",
            name: n.name.clone(),
            reason: e.to_string(),
        })?
        .map(|g| g.gid)
        .ok_or_else(|| PrivilegeError::Unknown {
            kind: "group",
            name: n.name.clone(),
            origin: n.origin.clone(),
        })
}

/// Carry out a plan. Call it after the capture is open and before any
/// thread is spawned.
pub fn drop_privileges(plan: &Plan) -> Result<(), PrivilegeError> {
    match plan {
        Plan::StayRoot => {
            tracing::warn!("running as root (allow_root): the packet path keeps every privilege");
            Ok(())
        }
        Plan::Unprivileged => {
            // Give up whatever else was granted (only then: the systemd
            // unit's system call filter refuses capset). A failure leaves the
            // process no more privileged than it started, so it is logged.
            if let Ok(now) = rustix::thread::capabilities(None)
                && !(now.permitted - KEPT).is_empty()
            {
                let sets = CapabilitySets {
                    effective: now.effective & KEPT,
                    permitted: now.permitted & KEPT,
                    inheritable: CapabilitySet::empty(),
                };
                if let Err(e) = rustix::thread::set_capabilities(None, sets) {
                    tracing::warn!(
                        "cannot give up capabilities beyond CAP_NET_RAW and CAP_NET_ADMIN: {e}"
                    );
                }
            }
            // segwatch never executes another program.
            let _ = rustix::thread::set_no_new_privs(true);
            Ok(())
        }
        Plan::Become(id) => become_user(id),
    }
}

fn become_user(id: &Identity) -> Result<(), PrivilegeError> {
    let threads = std::fs::read_dir("/proc/self/task").map_or(1, |d| d.count());
    if threads > 1 {
        return Err(PrivilegeError::Threads { threads });
    }
    let fail = |step: &'static str| {
        let user = id.user.clone();
        move |e: std::io::Error| PrivilegeError::Drop {
            user,
            step,
            reason: e.to_string(),
        }
    };
    let nix_fail = |step: &'static str| {
        let f = fail(step);
        move |e: nix::Error| f(std::io::Error::from(e))
    };
    // The bounding set limits what any later execve could gain; emptying it
    // needs CAP_SETPCAP, which root still has here.
    for bit in 0..64 {
        let cap = CapabilitySet::from_bits_retain(1 << bit);
        if KEPT.contains(cap) {
            continue;
        }
        match rustix::thread::capability_is_in_bounding_set(cap) {
            Ok(true) => rustix::thread::remove_capability_from_bounding_set(cap)
                .map_err(|e| fail("dropping the capability bounding set")(e.into()))?,
            Ok(false) => {}
            // Past the kernel's last capability.
            Err(_) => break,
        }
    }
    // Keep the permitted set across the change of user (the kernel clears it
    // when all user IDs leave 0), then narrow it to KEPT.
    rustix::thread::set_keep_capabilities(true)
        .map_err(|e| fail("prctl(PR_SET_KEEPCAPS)")(e.into()))?;
    nix::unistd::setgroups(&id.groups).map_err(nix_fail("setgroups"))?;
    nix::unistd::setresgid(id.gid, id.gid, id.gid).map_err(nix_fail("setresgid"))?;
    nix::unistd::setresuid(id.uid, id.uid, id.uid).map_err(nix_fail("setresuid"))?;
    rustix::thread::set_keep_capabilities(false)
        .map_err(|e| fail("prctl(PR_SET_KEEPCAPS)")(e.into()))?;
    rustix::thread::set_capabilities(
        None,
        CapabilitySets {
            effective: KEPT,
            permitted: KEPT,
            inheritable: CapabilitySet::empty(),
        },
    )
    .map_err(|e| fail("capset")(e.into()))?;
    rustix::thread::set_no_new_privs(true)
        .map_err(|e| fail("prctl(PR_SET_NO_NEW_PRIVS)")(e.into()))?;
    // Trust, but verify: a failed drop must not go unnoticed.
    let ids = nix::unistd::getresuid().map_err(nix_fail("getresuid"))?;
    let caps = rustix::thread::capabilities(None).map_err(|e| fail("capget")(e.into()))?;
    if [ids.real, ids.effective, ids.saved] != [id.uid; 3] || caps.permitted != KEPT {
        return Err(fail("checking the result")(std::io::Error::other(format!(
            "user IDs {ids:?}, permitted capabilities {:?}",
            caps.permitted
        ))));
    }
    tracing::info!(
        user = %id.user,
        uid = id.uid.as_raw(),
        gid = id.gid.as_raw(),
        "dropped root; keeping CAP_NET_RAW and CAP_NET_ADMIN"
    );
    Ok(())
}

/// How an output is written, which decides what must be writable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    /// Appended to (created if missing): the file, or its folder.
    Append,
    /// Replaced atomically (a temporary file beside it, renamed): the folder.
    Replace,
    /// A folder files are written into (created if missing).
    Folder,
}

/// An output segwatch will write after the drop.
pub struct Output<'a> {
    /// What it is, for the message ("the flow records").
    pub what: &'static str,
    pub path: &'a Path,
    pub write: Write,
}

/// Check, as the user segwatch now runs as, that it can write every output;
/// a file left behind by an earlier run as root is the usual culprit.
pub fn check_writable(user: &str, outputs: &[Output<'_>]) -> Result<(), PrivilegeError> {
    use rustix::fs::Access;
    for o in outputs {
        if o.path == Path::new("-") {
            continue;
        }
        let parent = match o.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let (target, access) = match o.write {
            Write::Append if o.path.exists() => (o.path, Access::WRITE_OK),
            Write::Folder if o.path.is_dir() => (o.path, Access::WRITE_OK | Access::EXEC_OK),
            _ => (parent, Access::WRITE_OK | Access::EXEC_OK),
        };
        // access(2) answers for the real user ID, which is the new user now.
        if let Err(e) = rustix::fs::access(target, access) {
            return Err(PrivilegeError::NotWritable {
                user: user.to_string(),
                what: o.what,
                path: o.path.to_path_buf(),
                folder: if target == o.path && o.write == Write::Append {
                    parent.to_path_buf()
                } else {
                    target.to_path_buf()
                },
                reason: std::io::Error::from(e).to_string(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(n: &str) -> Named {
        Named {
            name: n.into(),
            origin: "--user".into(),
        }
    }

    #[test]
    fn kept_capabilities_are_net_raw_and_net_admin() {
        assert_eq!(KEPT.bits(), (1 << 12) | (1 << 13));
    }

    #[test]
    fn a_group_needs_a_user() {
        let opts = ServiceOptions {
            group: Some(named("nogroup")),
            ..ServiceOptions::default()
        };
        let e = plan(&opts).expect_err("group alone");
        assert!(e.to_string().contains("needs a user"), "{e}");
    }

    #[test]
    fn unknown_users_are_named_with_a_fix() {
        let opts = ServiceOptions {
            user: Some(named("sgw-no-such-user")),
            ..ServiceOptions::default()
        };
        let e = plan(&opts).expect_err("unknown user").to_string();
        assert!(
            e.contains("no user named \"sgw-no-such-user\" (--user)") && e.contains("fix:"),
            "{e}"
        );
    }

    #[test]
    fn root_without_a_user_is_refused_unless_allowed() {
        let opts = ServiceOptions::default();
        if Uid::effective().is_root() {
            let e = plan(&opts).expect_err("root").to_string();
            assert!(e.contains("--user") && e.contains("--allow-root"), "{e}");
            let allowed = ServiceOptions {
                allow_root: true,
                ..opts
            };
            assert_eq!(plan(&allowed).expect("allowed"), Plan::StayRoot);
        } else {
            assert_eq!(plan(&opts).expect("unprivileged"), Plan::Unprivileged);
        }
    }

    #[test]
    fn root_resolves_nobody_with_its_groups() {
        if !Uid::effective().is_root() {
            return;
        }
        let Ok(Some(nobody)) = User::from_name("nobody") else {
            return;
        };
        let opts = ServiceOptions {
            user: Some(named("nobody")),
            ..ServiceOptions::default()
        };
        let Plan::Become(id) = plan(&opts).expect("nobody") else {
            panic!("expected a drop");
        };
        assert_eq!((id.uid, id.gid), (nobody.uid, nobody.gid));
        assert!(id.groups.contains(&nobody.gid), "{:?}", id.groups);
    }

    #[test]
    fn writable_checks_name_the_path_and_the_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("flows.jsonl");
        let ok = [Output {
            what: "the flow records",
            path: &file,
            write: Write::Append,
        }];
        assert!(check_writable("me", &ok).is_ok());
        let missing = dir.path().join("no/such/folder/flows.jsonl");
        let bad = [Output {
            what: "the flow records",
            path: &missing,
            write: Write::Append,
        }];
        let e = check_writable("me", &bad)
            .expect_err("missing folder")
            .to_string();
        assert!(
            e.contains("cannot write the flow records") && e.contains("chown me"),
            "{e}"
        );
    }
}
