//! Hosts booted as `systemd-nspawn` containers on the guests' switch.
//!
//! A container boots the guest image's root tree (never written: an
//! overlay mount keeps its changes in the run folder, `<run>/<host>/upper`,
//! so a container stopped and started again, as an upgrade does, finds its
//! disk as it left it) with the host's seed
//! folder where cloud-init's NoCloud source reads it, so the same seed and
//! install.sh run as in a QEMU guest, at native speed. Its kernel is the
//! machine's: module loading and most sysctls are not the host's to change.
//!
//! Networking stays private: one network namespace (held by a `sleep` in
//! `unshare --net`) holds a bridge, and a tap on that bridge that the
//! `vde_switch` plugs into, so QEMU guests on the switch and containers on
//! the bridge share one link. Each container gets one end of a veth pair
//! whose other end is on the bridge; its end carries the host's planned
//! MAC, so the seed's network-config matches it as in a guest.

use std::path::Path;
use std::process::Command;

/// The bridge in the private namespace.
pub(crate) const BRIDGE: &str = "kiln0";
/// The tap the switch routes through.
pub(crate) const TAP: &str = "kiln0tap";
/// What the holder prints once the bridge and tap exist.
pub(crate) const READY: &str = "kiln-netns-ready";

/// The holder of the private namespace: creates the bridge and tap, says
/// so, and sleeps until stopped.
pub(crate) fn holder_command(unshare: &Path) -> Command {
    let script = format!(
        "set -e; ip link set lo up; ip link add {BRIDGE} type bridge; \
         ip tuntap add {TAP} mode tap; ip link set {TAP} master {BRIDGE}; \
         ip link set {TAP} up; ip link set {BRIDGE} up; echo {READY}; exec sleep infinity"
    );
    let mut cmd = Command::new(unshare);
    cmd.args(["--net", "sh", "-c", &script]);
    cmd
}

/// `program` run in the holder `pid`'s network namespace (only that one:
/// `ip netns exec` would also remount `/sys`, which breaks nspawn's cgroups).
pub(crate) fn in_netns(nsenter: &Path, pid: u32, program: &Path) -> Command {
    let mut cmd = Command::new(nsenter);
    cmd.arg(format!("--net=/proc/{pid}/ns/net")).arg(program);
    cmd
}

/// The names of container `index`'s veth ends: (on the bridge, in the container).
pub(crate) fn veth_names(index: usize) -> (String, String) {
    (format!("kb{index}"), format!("kc{index}"))
}

/// The `sh -c` script creating container `index`'s veth pair, the
/// container's end with `mac`, the other end up on the bridge; a pair left
/// from the container's last start (restarted by an upgrade) goes first.
pub(crate) fn veth_script(index: usize, mac: &str) -> String {
    let (outer, inner) = veth_names(index);
    format!(
        "set -e; ip link del {outer} 2>/dev/null || :; \
         ip link add {outer} type veth peer name {inner} address {mac}; \
         ip link set {outer} master {BRIDGE}; ip link set {outer} up"
    )
}

/// Everything one container's command line is made from.
#[derive(Debug, Clone)]
pub(crate) struct ContainerSpec<'a> {
    pub name: &'a str,
    pub rootfs: &'a Path,
    /// The container's own folder in the run folder: `upper/` and `work/` of its overlay over
    /// `rootfs`, mounted on `root/`.
    pub state: &'a Path,
    pub seed_dir: &'a Path,
    /// The out folder of a build whose seeds carry no bundles: its `bundles/` and install.sh
    /// are bound where the `medium` source finds them (`/run/kiln/bundle-medium/`) as if the
    /// medium were mounted (not the whole folder: `hosts/` holds every host's secrets).
    pub medium_from: Option<&'a Path>,
    pub interface: &'a str,
}

/// The cgroup (in each hierarchy systemd uses) that container `name`,
/// started as process `pid`, runs in: `kiln-<name>-<pid>` below the cgroup
/// boot runs in.
pub(crate) fn cgroup_name(name: &str, pid: u32) -> String {
    format!("{}{pid}", cgroup_prefix(name))
}

fn cgroup_prefix(name: &str) -> String {
    format!("kiln-{name}-")
}

/// Removes the cgroups of stopped containers, each (host name, pid it was started as).
pub(crate) fn remove_cgroups<'a>(containers: impl IntoIterator<Item = (&'a str, u32)>) {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    for (name, pid) in containers {
        for dir in cgroup_dirs(&own, &cgroup_name(name, pid)) {
            remove_cgroup(&dir);
        }
    }
}

/// Removes a stopped container's cgroup folder and those nspawn made below
/// it. A container whose nspawn was killed (it did not halt in time) leaves
/// its init and services running in there: they are killed first, and the
/// folders go once they are empty (best effort: after 10 s a cgroup that
/// still has processes stays, with a warning).
fn remove_cgroup(dir: &Path) {
    let tree = cgroup_tree(dir);
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let pids = cgroup_pids(&tree);
        if pids.is_empty() || std::time::Instant::now() > until {
            break;
        }
        for pid in pids {
            // SAFETY: kill(2) of a process in a cgroup this boot made for its container.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    for d in &tree {
        if let Err(e) = std::fs::remove_dir(d) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(cgroup = %d.display(), error = %e, "cannot remove a container's cgroup");
            }
        }
    }
}

/// Cgroup folder `dir` and every folder below it, deepest first (the order they can be
/// removed in).
fn cgroup_tree(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut tree = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                tree.extend(cgroup_tree(&entry.path()));
            }
        }
    }
    tree.push(dir.to_owned());
    tree
}

/// The processes in the cgroups `tree`.
fn cgroup_pids(tree: &[std::path::PathBuf]) -> Vec<u32> {
    tree.iter()
        .flat_map(|d| {
            std::fs::read_to_string(d.join("cgroup.procs"))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// The cgroup folders of `group` below this process's own cgroups, in the
/// hierarchies systemd uses (`name=systemd` of a legacy or hybrid layout,
/// and the unified one), from `/proc/self/cgroup`'s `self_cgroup` text.
pub(crate) fn cgroup_dirs(self_cgroup: &str, group: &str) -> Vec<std::path::PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    self_cgroup
        .lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, ':');
            let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
            let mount = match controllers {
                "name=systemd" => root.join("systemd"),
                "" if root.join("unified").is_dir() => root.join("unified"),
                "" => root.to_owned(),
                _ => return None,
            };
            Some(mount.join(path.trim_start_matches('/')).join(group))
        })
        .collect()
}

/// Moves the shell into cgroup `kiln-<name>-$$` in each hierarchy systemd
/// uses: without a systemd on the machine, nspawn puts the container's
/// `payload` and `supervisor` cgroups below its own, and containers sharing
/// one would remove each other's units' cgroups.
fn own_cgroup_script(name: &str) -> String {
    format!(
        "g={}$$; while IFS=: read -r _ c p; do case $c in \
         name=systemd) d=/sys/fs/cgroup/systemd ;; \
         '') if [ -d /sys/fs/cgroup/unified ]; then d=/sys/fs/cgroup/unified; else d=/sys/fs/cgroup; fi ;; \
         *) continue ;; esac; \
         mkdir -p \"$d$p/$g\" && echo $$ >\"$d$p/$g/cgroup.procs\" || exit 1; done </proc/self/cgroup",
        cgroup_prefix(name)
    )
}

/// Mounts `state/root`: an overlay of `rootfs` (read-only) with `state/upper` (created on the
/// first start, kept after) holding what the container wrote. The mount lives in the
/// container's private mount namespace and goes with it.
fn overlay_script(rootfs: &Path, state: &Path) -> String {
    let q = |p: &Path| crate::process::shell_quote(&p.to_string_lossy());
    let (upper, work, root) = (state.join("upper"), state.join("work"), state.join("root"));
    format!(
        "mkdir -p {u} {w} {r} && mount -t overlay overlay -o {opts} {r}",
        u = q(&upper),
        w = q(&work),
        r = q(&root),
        opts = crate::process::shell_quote(&format!(
            "lowerdir={},upperdir={},workdir={}",
            rootfs.to_string_lossy(),
            upper.to_string_lossy(),
            work.to_string_lossy()
        )),
    )
}

/// The container's command, to run through [`in_netns`] with `unshare` as
/// the program: its own cgroup ([`cgroup_name`]), a private mount namespace
/// where `/sys` is read-only, so nspawn does not wait for a udev (there is
/// none on the machine) to announce the veth, then nspawn itself. Stopped
/// with SIGTERM, it halts the container cleanly.
pub(crate) fn container_args(nspawn: &Path, c: &ContainerSpec<'_>) -> Vec<String> {
    let mut args = vec![
        "--mount".into(),
        "sh".into(),
        "-c".into(),
        format!(
            "{} && mount -o remount,bind,ro /sys && {} && exec \"$0\" \"$@\"",
            own_cgroup_script(c.name),
            overlay_script(c.rootfs, c.state)
        ),
        nspawn.to_string_lossy().into_owned(),
        "--quiet".into(),
        "--register=no".into(),
        "--keep-unit".into(),
        "--console=read-only".into(),
        "--boot".into(),
        format!("--machine={}", c.name),
        format!("--directory={}", c.state.join("root").to_string_lossy()),
        format!(
            "--bind-ro={}:/var/lib/cloud/seed/nocloud",
            c.seed_dir.to_string_lossy()
        ),
        format!("--network-interface={}", c.interface),
    ];
    if let Some(out) = c.medium_from {
        for name in ["bundles", "install.sh"] {
            args.push(format!(
                "--bind-ro={}:/run/kiln/bundle-medium/{name}",
                out.join(name).to_string_lossy()
            ));
        }
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::display;

    /// A process left in a container's cgroup (its nspawn killed) is
    /// killed, and the cgroup and the one below it are removed.
    #[test]
    fn removing_a_cgroup_kills_what_is_left_in_it() {
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let group = cgroup_name("unit-test", std::process::id());
        let dirs = cgroup_dirs(&own, &group);
        let Some(dir) = dirs.first() else {
            panic!("no cgroup hierarchy systemd uses in /proc/self/cgroup: {own}");
        };
        if std::fs::create_dir_all(dir.join("payload")).is_err() {
            assert!(
                std::env::var_os("KILN_REQUIRE_TOOLS").is_none(),
                "cannot make cgroup {} (root needed)",
                dir.display()
            );
            eprintln!(
                "not run: cannot make cgroup {} (root needed)",
                dir.display()
            );
            return;
        }
        let mut child = Command::new("sleep").arg("600").spawn().unwrap();
        std::fs::write(dir.join("payload/cgroup.procs"), child.id().to_string()).unwrap();
        assert_eq!(cgroup_pids(&cgroup_tree(dir)), [child.id()]);
        remove_cgroup(dir);
        let status = child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL)
        );
        assert!(!dir.exists(), "{} still exists", dir.display());
    }

    #[test]
    fn container_command_line() {
        let spec = ContainerSpec {
            name: "etcd1",
            rootfs: Path::new("/g/rootfs"),
            state: Path::new("/run/k/etcd1"),
            seed_dir: Path::new("/out/lab/hosts/etcd1/seed"),
            medium_from: None,
            interface: "kc0",
        };
        let mut cmd = in_netns(Path::new("nsenter"), 42, Path::new("unshare"));
        cmd.args(container_args(Path::new("systemd-nspawn"), &spec));
        let shown = display(&cmd);
        let script = format!(
            "{} && mount -o remount,bind,ro /sys && {} && exec \"$0\" \"$@\"",
            own_cgroup_script("etcd1"),
            overlay_script(Path::new("/g/rootfs"), Path::new("/run/k/etcd1"))
        );
        assert!(script.starts_with("g=kiln-etcd1-$$; "), "{script}");
        assert!(
            script.contains(
                "mkdir -p /run/k/etcd1/upper /run/k/etcd1/work /run/k/etcd1/root && \
                 mount -t overlay overlay -o \
                 lowerdir=/g/rootfs,upperdir=/run/k/etcd1/upper,workdir=/run/k/etcd1/work \
                 /run/k/etcd1/root && exec"
            ),
            "{script}"
        );
        assert_eq!(
            shown.replace(&crate::process::shell_quote(&script), "SCRIPT"),
            "nsenter --net=/proc/42/ns/net unshare --mount sh -c \
             SCRIPT systemd-nspawn --quiet \
             --register=no --keep-unit --console=read-only --boot \
             --machine=etcd1 --directory=/run/k/etcd1/root \
             --bind-ro=/out/lab/hosts/etcd1/seed:/var/lib/cloud/seed/nocloud \
             --network-interface=kc0"
        );
    }

    #[test]
    fn cgroups_below_boots_own_in_the_hierarchies_systemd_uses() {
        let hybrid = "9:name=systemd:/\n4:memory:/x\n0::/payload\n";
        let dirs = cgroup_dirs(hybrid, "kiln-etcd1-7");
        assert_eq!(dirs.len(), 2, "{dirs:?}");
        assert_eq!(dirs[0], Path::new("/sys/fs/cgroup/systemd/kiln-etcd1-7"));
        assert!(dirs[1].ends_with("payload/kiln-etcd1-7"), "{dirs:?}");
        assert_eq!(cgroup_name("etcd1", 7), "kiln-etcd1-7");
    }

    #[test]
    fn veth_and_holder_scripts() {
        assert_eq!(
            veth_script(3, "52:54:00:77:00:11"),
            "set -e; ip link del kb3 2>/dev/null || :; \
             ip link add kb3 type veth peer name kc3 address 52:54:00:77:00:11; \
             ip link set kb3 master kiln0; ip link set kb3 up"
        );
        let holder = display(&holder_command(Path::new("unshare")));
        assert!(holder.starts_with("unshare --net sh -c "), "{holder}");
        assert!(
            holder.contains("ip tuntap add kiln0tap mode tap"),
            "{holder}"
        );
        assert!(holder.contains("echo kiln-netns-ready"), "{holder}");
    }
}
