//! One instance's own network: a namespace the test creates, joined to the root
//! namespace (where the server listens) by a veth pair, each end with an address of
//! TEST-NET-2 (198.51.100.0/24, RFC 5737, for documentation); and the partition,
//! `iptables -j DROP` rules inside that namespace only.
//!
//! Nothing else is touched: no other interface, no address outside the pair, no rule
//! of the root namespace. A namespace is claimed by name (`ip netns add` fails when
//! the name exists, so two test processes never share one), its slot gives the veth
//! names and addresses, and a slot a killed run left behind (a namespace, a veth or
//! an address still there) is skipped. Everything is removed on drop, panics included.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// The first three octets of the addresses: TEST-NET-2.
const NET: &str = "198.51.100";
/// Slots of four addresses (a /30 per veth pair) in the /24.
const SLOTS: u8 = 64;

/// Which packets a cut drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Everything over the instance's link, both ways.
    Both,
    /// Only what reaches the instance from the server (a half-open connection: the
    /// instance's packets arrive, the answers vanish).
    FromServer,
}

/// A namespace with its veth pair, removed on drop.
pub struct Netns {
    pub name: String,
    slot: u8,
}

impl Netns {
    /// Claims the first free slot and plumbs it.
    pub fn create() -> Netns {
        (0..SLOTS)
            .find_map(Netns::claim)
            .unwrap_or_else(|| panic!("no free slot of {SLOTS} for a test namespace in {NET}.0/24"))
    }

    fn claim(slot: u8) -> Option<Netns> {
        let name = format!("pgqd-it-{slot}");
        let added = ip(&["netns", "add", &name]);
        if !added.status.success() {
            // Taken (by a concurrent run, or left behind); any other failure (no
            // privilege for namespaces here) is the test's.
            let taken = Path::new("/run/netns").join(&name).exists();
            assert!(
                taken,
                "ip netns add {name} failed: {}",
                String::from_utf8_lossy(&added.stderr)
            );
            return None;
        }
        if left_behind(slot) {
            // Another run's veth or address: leave it alone, give the name back.
            ip(&["netns", "del", &name]);
            return None;
        }
        let claimed = Netns { name, slot };
        claimed.plumb();
        Some(claimed)
    }

    fn plumb(&self) {
        let (root_if, ns_if) = (self.root_if(), self.ns_if());
        let root_addr = format!("{}/30", self.server_addr());
        let ns_addr = format!("{}/30", self.addr());
        let steps: [&[&str]; 6] = [
            &[
                "link", "add", &root_if, "type", "veth", "peer", "name", &ns_if, "netns",
                &self.name,
            ],
            &["addr", "add", &root_addr, "dev", &root_if],
            &["link", "set", &root_if, "up"],
            &["-n", &self.name, "addr", "add", &ns_addr, "dev", &ns_if],
            &["-n", &self.name, "link", "set", &ns_if, "up"],
            &["-n", &self.name, "link", "set", "lo", "up"],
        ];
        for step in steps {
            checked(ip(step), &format!("ip {}", step.join(" ")));
        }
    }

    /// The root end's address, where the server listens for this instance.
    pub fn server_addr(&self) -> String {
        format!("{NET}.{}", u32::from(self.slot) * 4 + 1)
    }

    /// The instance's address, inside the namespace.
    pub fn addr(&self) -> String {
        format!("{NET}.{}", u32::from(self.slot) * 4 + 2)
    }

    fn root_if(&self) -> String {
        root_if(self.slot)
    }

    fn ns_if(&self) -> String {
        format!("pgqit{}n", self.slot)
    }

    /// `program` run inside the namespace (`ip netns exec`, which execs it: the
    /// child's pid is the program's).
    pub fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Drops `cut`'s packets on the instance's link from now on.
    pub fn cut(&self, cut: Cut) {
        let ns_if = self.ns_if();
        self.iptables(&["-A", "INPUT", "-i", &ns_if, "-j", "DROP"]);
        if cut == Cut::Both {
            self.iptables(&["-A", "OUTPUT", "-o", &ns_if, "-j", "DROP"]);
        }
    }

    /// Removes every rule of the namespace (all of them the test's).
    pub fn heal(&self) {
        self.iptables(&["-F"]);
    }

    fn iptables(&self, args: &[&str]) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, "iptables", "-w"])
            .args(args)
            .output()
            .expect("run iptables");
        checked(
            out,
            &format!("iptables {} in {}", args.join(" "), self.name),
        );
    }

    /// `f` on a thread inside the namespace (to reach the instance's HTTP listener
    /// on its loopback, which no cut touches).
    pub fn within<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let ns = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
                    // SAFETY: setns on a namespace file we opened, for this thread alone
                    // (a network namespace is per thread); the thread ends with `f`.
                    let joined = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                    assert_eq!(
                        joined,
                        0,
                        "setns into {path}: {}",
                        std::io::Error::last_os_error()
                    );
                    f()
                })
                .join()
                .expect("the thread inside the namespace panicked")
        })
    }
}

impl Drop for Netns {
    /// Deleting one end deletes the pair; the namespace goes with its name (the
    /// instances in it were stopped before).
    fn drop(&mut self) {
        ip(&["link", "del", &self.root_if()]);
        ip(&["netns", "del", &self.name]);
    }
}

/// The root end of `slot`'s veth pair.
fn root_if(slot: u8) -> String {
    format!("pgqit{slot}r")
}

/// Whether the root namespace still has `slot`'s veth or an address of its /30.
fn left_behind(slot: u8) -> bool {
    let link = ip(&["link", "show", "dev", &root_if(slot)])
        .status
        .success();
    let subnet = format!("{NET}.{}/30", u32::from(slot) * 4);
    let addrs = ip(&["-o", "-4", "addr", "show", "to", &subnet]);
    link || !addrs.stdout.is_empty()
}

fn ip(args: &[&str]) -> Output {
    Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ip (iproute2)")
}

fn checked(out: Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
