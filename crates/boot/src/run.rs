//! [`boot`]: prepare, start, follow, stop.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::error::BootError;
use crate::events::{BootEvents, HostPhase, HostStatus};
use crate::follow::Follower;
use crate::layout::{cluster_dir, HostPlan, Layout};
use crate::link;
use crate::marker::FinalMessage;
use crate::monitor::Monitor;
use crate::nspawn::{self, ContainerSpec};
use crate::options::{BootOptions, Firmware};
use crate::process::{self, set_lifetime, spawn_error, stop_all, tail_text, Guard, Lifetime};
use crate::qemu::{self, GuestBoot, GuestSpec, ImageStart, SwitchMode};
use crate::report::{BootReport, FailReason, HostFailure, HostReport, Kept};

/// How often the serial logs and processes are looked at.
const POLL: Duration = Duration::from_millis(250);
/// How long the switch may take to create its socket.
const SWITCH_START: Duration = Duration::from_secs(10);
/// The longest unix socket path (`sun_path` holds 108 bytes with its NUL).
const MAX_SOCKET_PATH: usize = 107;
/// Room left for the per-port socket names the switch and QEMU add.
const SOCKET_SLACK: usize = 24;

/// Boots the chosen hosts of a built cluster under QEMU and follows their
/// consoles until every host is ready or one fails.
///
/// Each guest gets a copy-on-write overlay of `opts.image`, its seed image
/// read-only, and one NIC (with the MAC its seed matches) on a private
/// `vde_switch` that only the guests are plugged into. A host is ready when
/// its console shows `KILN done ok` and then cloud-init's final message; it
/// fails on a `KILN … fail` marker, cloud-init finishing without the done
/// marker, a kernel panic, QEMU exiting, or `opts.timeout`. The first
/// failure ends the boot with [`BootError::HostFailed`].
///
/// Every process started here is stopped (SIGTERM, then SIGKILL) and the
/// run folder removed before returning, unless `opts.keep`: then the guests
/// and switch keep running and [`BootReport::kept`] says how to stop them.
pub fn boot(opts: &BootOptions, events: &dyn BootEvents) -> Result<BootReport, BootError> {
    let started = Instant::now();
    let dir = cluster_dir(&opts.out)?;
    let layout = Layout::load(&dir)?;
    // Containers take their seed folder and network boots kiln serve's seed: no seed image.
    let seedless: Vec<String> = opts
        .containers
        .iter()
        .chain(&opts.netboot)
        .cloned()
        .collect();
    let hosts = layout.plan(
        &dir,
        opts.hosts.as_deref(),
        opts.seed,
        opts.memory_mb,
        &seedless,
    )?;
    if let Some(gb) = opts.disk_gb.filter(|gb| !qemu::DISK_GB.contains(gb)) {
        return Err(BootError::DiskSize {
            gb,
            min: *qemu::DISK_GB.start(),
            max: *qemu::DISK_GB.end(),
        });
    }
    link::check(opts, &layout)?;
    let unknown: Vec<String> = opts
        .containers
        .iter()
        .chain(&opts.netboot)
        .filter(|c| !hosts.iter().any(|h| &h.name == *c))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(BootError::UnknownHosts {
            unknown,
            known: hosts.iter().map(|h| h.name.clone()).collect(),
        });
    }
    check_netboot(opts)?;
    // The image, its kernel and initrd, when a host boots from them.
    let from_image: Vec<&str> = hosts
        .iter()
        .filter(|h| !opts.containers.contains(&h.name) && !opts.netboot.contains(&h.name))
        .map(|h| h.name.as_str())
        .collect();
    if !from_image.is_empty() && opts.image.as_os_str().is_empty() {
        return Err(BootError::Netboot {
            reason: format!(
                "no image given, but {} would boot from it: give the image, or boot every host with --netboot",
                from_image.join(", ")
            ),
        });
    }
    let image = match from_image.is_empty() {
        true => None,
        false => Some((
            existing(
                "base image",
                &opts.image_path(),
                " (build one with tests/e2e/guest-image.sh)",
            )?,
            image_start(opts)?,
        )),
    };
    let rootfs = if opts.containers.is_empty() {
        None
    } else {
        let path = opts.rootfs_path();
        if !path.join("sbin/init").exists() {
            return Err(BootError::Missing {
                what: "container root tree (with sbin/init)",
                path,
                hint: " (tests/e2e/guest-image.sh keeps it as rootfs beside the disk)".into(),
            });
        }
        Some(std::path::absolute(&path).map_err(BootError::io("resolve", &path))?)
    };
    // Each container host's seed folder, checked before anything is created.
    let seed_dirs = hosts
        .iter()
        .map(|h| match opts.containers.contains(&h.name) {
            true => seed_dir(h).map(Some),
            false => Ok(None),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let log_dir = opts.log_dir_path(&dir);
    std::fs::create_dir_all(&log_dir).map_err(BootError::io("create folder", &log_dir))?;
    let lifetime = if opts.keep {
        Lifetime::Detached
    } else {
        Lifetime::Tied
    };

    let parent = opts.run_parent.clone().unwrap_or_else(std::env::temp_dir);
    let run_dir = tempfile::Builder::new()
        .prefix("kiln-boot-")
        .tempdir_in(&parent)
        .map_err(BootError::io("create a run folder in", &parent))?;
    let socket = run_dir.path().join("vde.ctl");
    let socket_len = socket.as_os_str().len() + SOCKET_SLACK;
    if socket_len > MAX_SOCKET_PATH {
        return Err(BootError::SocketPathTooLong {
            path: socket,
            len: socket_len,
            max: MAX_SOCKET_PATH,
        });
    }

    // Overlays first, so the guests start close together.
    let mut guests = Vec::with_capacity(hosts.len());
    for (host, seed_dir) in hosts.iter().zip(seed_dirs) {
        if let Some(seed_dir) = seed_dir {
            guests.push(Guest::new(
                host,
                Kind::Container(seed_dir),
                &log_dir,
                &host.name,
            )?);
            continue;
        }
        let disk = overlay_path(run_dir.path(), &host.name);
        let (create, kind) = match (opts.netboot.contains(&host.name), &image) {
            (true, _) => (
                qemu::empty_disk_command(
                    &opts.tools.qemu_img,
                    &disk,
                    opts.disk_gb.unwrap_or(*qemu::DISK_GB.start()),
                ),
                Kind::Netboot(disk.clone()),
            ),
            (false, Some((image, _))) => (
                qemu::overlay_command(&opts.tools.qemu_img, image, &disk, opts.disk_gb),
                Kind::Qemu(disk.clone()),
            ),
            (false, None) => unreachable!("a host booting from the image has it checked"),
        };
        process::run(create)?;
        guests.push(Guest::new(host, kind, &log_dir, &host.name)?);
    }

    let mut netns = match rootfs.is_some() || link::wanted(opts) {
        true => Some(start_netns(opts, run_dir.path(), lifetime)?),
        false => None,
    };
    let netns_pid = netns.as_ref().map(Guard::pid_of);
    let mut switch = start_switch(opts, &socket, run_dir.path(), lifetime, netns_pid)?;
    tracing::info!(socket = %socket.display(), "switch started");
    events.switch_started(&socket);
    // The machine's services on the link answer before any host looks for them.
    let mut services = match (opts.link_address, netns_pid) {
        (Some(address), Some(holder)) => link::start(opts, address, holder, &log_dir, lifetime)?,
        _ => Vec::new(),
    };
    for (service, guard) in &services {
        events.link_service_ready(service, guard.pid_of());
    }

    let launcher = Launcher {
        opts,
        image_start: image.as_ref().map(|(_, start)| start),
        rootfs: rootfs.as_deref(),
        netns: netns_pid,
        socket: &socket,
        run_dir: run_dir.path(),
        lifetime,
    };
    let mut guards = Vec::with_capacity(guests.len());
    for (index, guest) in guests.iter_mut().enumerate() {
        guards.push(launcher.start(index, guest, events)?);
    }

    let failed = follow(&mut guests, &mut guards, opts.timeout, events);
    let elapsed = started.elapsed();

    let kept = if opts.keep {
        for g in &mut guards {
            g.disarm();
        }
        switch.disarm();
        for (_, g) in &mut services {
            g.disarm();
        }
        if let Some(n) = &mut netns {
            n.disarm();
        }
        Some(Kept {
            guests: guests
                .iter()
                .zip(&guards)
                .map(|(g, guard)| (g.plan.name.clone(), guard.pid_of()))
                .collect(),
            switch_pid: switch.pid_of(),
            netns_pid,
            services: services
                .iter()
                .map(|(s, guard)| (s.clone(), guard.pid_of()))
                .collect(),
            containers: guests
                .iter()
                .filter(|g| matches!(g.kind, Kind::Container(_)))
                .map(|g| g.plan.name.clone())
                .collect(),
            cluster: layout.cluster.clone(),
            run_dir: run_dir.keep(),
        })
    } else {
        let names: Vec<String> = guests.iter().map(|g| g.plan.name.clone()).collect();
        events.stopping(&names);
        stop_all(&mut guards);
        nspawn::remove_cgroups(
            guests
                .iter()
                .zip(&guards)
                .filter(|(g, _)| matches!(g.kind, Kind::Container(_)))
                .map(|(g, guard)| (g.plan.name.as_str(), guard.pid_of())),
        );
        switch.stop();
        let mut service_guards: Vec<Guard> = services.drain(..).map(|(_, g)| g).collect();
        stop_all(&mut service_guards);
        if let Some(n) = &mut netns {
            n.stop();
        }
        tracing::info!("guests and switch stopped");
        None
    };

    let report = BootReport {
        cluster: layout.cluster,
        hosts: guests.iter().map(Guest::report).collect(),
        elapsed,
        log_dir,
        kept,
    };
    match failed {
        None => Ok(report),
        Some(i) => Err(BootError::HostFailed {
            failure: Box::new(guests[i].failure()),
            report: Box::new(report),
        }),
    }
}

/// The qcow2 overlay of QEMU guest `host` in the run folder.
pub(crate) fn overlay_path(run_dir: &Path, host: &str) -> PathBuf {
    run_dir.join(format!("{host}.qcow2"))
}

/// QEMU guest `host`'s monitor socket in the run folder.
pub(crate) fn monitor_path(run_dir: &Path, host: &str) -> PathBuf {
    run_dir.join(format!("{host}.mon"))
}

/// Container `host`'s folder in the run folder (its overlay's upper and work folders).
pub(crate) fn state_path(run_dir: &Path, host: &str) -> PathBuf {
    run_dir.join(host)
}

/// What starting any guest needs, the same for a first boot and a restart.
pub(crate) struct Launcher<'a> {
    pub opts: &'a BootOptions,
    /// How guests start from the image (its files checked), when a host boots from it.
    pub image_start: Option<&'a ImageStart>,
    pub rootfs: Option<&'a Path>,
    pub netns: Option<u32>,
    pub socket: &'a Path,
    pub run_dir: &'a Path,
    pub lifetime: Lifetime,
}

impl Launcher<'_> {
    /// Starts `guest`, the `index`th host of the boot (its veth pair's number), and says so.
    pub(crate) fn start(
        &self,
        index: usize,
        guest: &mut Guest<'_>,
        events: &dyn BootEvents,
    ) -> Result<Guard, BootError> {
        let opts = self.opts;
        let stderr =
            File::create(&guest.qemu_log).map_err(BootError::io("create", &guest.qemu_log))?;
        let (mut cmd, label) = match (&guest.kind, self.netns, self.rootfs) {
            (Kind::Container(seed_dir), Some(holder), Some(rootfs)) => {
                let mut veth = nspawn::in_netns(&opts.tools.nsenter, holder, Path::new("sh"));
                veth.args(["-c", &nspawn::veth_script(index, &guest.plan.mac)]);
                process::run(veth)?;
                let medium_from = guest.plan.bundle_medium.as_deref().and_then(Path::parent);
                let state = state_path(self.run_dir, &guest.plan.name);
                let spec = ContainerSpec {
                    name: &guest.plan.name,
                    rootfs,
                    state: &state,
                    seed_dir,
                    medium_from,
                    interface: &nspawn::veth_names(index).1,
                };
                let mut cmd = nspawn::in_netns(&opts.tools.nsenter, holder, &opts.tools.unshare);
                cmd.args(nspawn::container_args(&opts.tools.nspawn, &spec));
                // The container's console is nspawn's output: the same markers a serial console shows.
                let console = File::create(&guest.serial_log)
                    .map_err(BootError::io("create", &guest.serial_log))?;
                cmd.stdout(console);
                (cmd, "systemd-nspawn")
            }
            (Kind::Qemu(disk) | Kind::Netboot(disk), ..) => {
                let monitor = monitor_path(self.run_dir, &guest.plan.name);
                let boot = match (&guest.kind, self.image_start) {
                    (Kind::Qemu(_), Some(start)) => GuestBoot::Disk {
                        start: start.start(&opts.kernel_args),
                        seed: guest
                            .plan
                            .seed
                            .as_deref()
                            .expect("a host booting from the image has its seed image checked"),
                        bundle_medium: guest.plan.bundle_medium.as_deref(),
                    },
                    (Kind::Qemu(_), ..) => unreachable!("a host booting from the image has it"),
                    _ => GuestBoot::Network,
                };
                let spec = GuestSpec {
                    name: &guest.plan.name,
                    memory_mb: guest.plan.memory_mb,
                    cpus: guest.plan.cpus,
                    boot,
                    disk,
                    serial_log: &guest.serial_log,
                    switch_socket: self.socket,
                    monitor: &monitor,
                    mac: &guest.plan.mac,
                };
                let mut cmd = qemu::guest_command(&opts.tools.qemu, &spec);
                let stdout = stderr
                    .try_clone()
                    .map_err(BootError::io("open", &guest.qemu_log))?;
                cmd.stdout(stdout);
                (cmd, "qemu")
            }
            (Kind::Container(_), ..) => unreachable!("containers start the namespace holder"),
        };
        cmd.stdin(Stdio::null()).stderr(stderr);
        set_lifetime(&mut cmd, self.lifetime);
        let child = cmd.spawn().map_err(|e| spawn_error(&cmd, e))?;
        guest.command = process::display(&cmd);
        guest.started = Instant::now();
        guest.monitor.started();
        let pid = child.id();
        tracing::info!(host = %guest.plan.name, pid, command = %guest.command, "guest started");
        events.host_started(&guest.plan.name, pid, &guest.serial_log);
        events.host_status(&guest.plan.name, &guest.status());
        Ok(Guard::child(child, format!("{label} {}", guest.plan.name)))
    }
}

/// Network-booted hosts are QEMU guests, and need a server on the link to answer them.
fn check_netboot(opts: &BootOptions) -> Result<(), BootError> {
    let Some(host) = opts.netboot.first() else {
        return Ok(());
    };
    let bad = |reason: String| Err(BootError::Netboot { reason });
    if let Some(both) = opts.netboot.iter().find(|h| opts.containers.contains(h)) {
        return bad(format!(
            "host {both} is both a container and booted from the network; a container has no firmware to boot"
        ));
    }
    if opts.link_address.is_none() || opts.link_services.is_empty() {
        return bad(format!(
            "host {host} boots from the network, but nothing on the link would answer it: give \
             --link-address ADDRESS/PREFIX and a --link-service serving DHCP and iPXE there \
             (e.g. '8080=kiln serve OUT --listen ADDRESS:8080 --dhcp --netboot DIR …')"
        ));
    }
    Ok(())
}

/// How guests booting from the image start (see [`Firmware`]), every file it needs checked to
/// exist and made absolute.
pub(crate) fn image_start(opts: &BootOptions) -> Result<ImageStart, BootError> {
    let image = opts.image_path();
    let has_loader = has_boot_loader(&image)?;
    let root = match has_loader {
        true => qemu::ROOT_BY_LABEL,
        false => qemu::ROOT_WHOLE_DISK,
    };
    let firmware = match opts.firmware {
        Firmware::Auto if has_loader => Firmware::Bios,
        Firmware::Auto => Firmware::Direct,
        other => other,
    };
    if firmware == Firmware::Direct {
        return Ok(ImageStart::Kernel {
            kernel: existing("kernel", &opts.kernel_path(), " (set the kernel option)")?,
            initrd: existing("initrd", &opts.initrd_path(), " (set the initrd option)")?,
            root,
        });
    }
    if !has_loader {
        return Err(BootError::Firmware {
            reason: format!(
                "{} has no boot loader (no MANIFEST.json of `kiln image` beside it names one): \
                 boot it with its kernel and initrd (firmware direct), or boot a `kiln image` disk",
                image.display()
            ),
        });
    }
    if !opts.kernel_args.is_empty() {
        return Err(BootError::Firmware {
            reason: format!(
                "kernel arguments ({}) need the direct start: through the firmware, the image's \
                 GRUB takes the kernel command line from the image's /boot/grub/grub.cfg",
                opts.kernel_args.join(" ")
            ),
        });
    }
    Ok(match firmware {
        Firmware::Uefi => ImageStart::Uefi(existing(
            "UEFI firmware",
            &opts.tools.ovmf,
            " (apt-get install ovmf)",
        )?),
        _ => ImageStart::Bios,
    })
}

/// Whether `image`'s folder holds `kiln image`'s MANIFEST.json naming the disk's boot loader.
fn has_boot_loader(image: &Path) -> Result<bool, BootError> {
    let manifest = image.with_file_name("MANIFEST.json");
    let text = match std::fs::read_to_string(&manifest) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(BootError::io("read", &manifest)(e)),
    };
    let doc: serde_json::Value = serde_json::from_str(&text).map_err(|e| BootError::Firmware {
        reason: format!("{}: not JSON: {e}", manifest.display()),
    })?;
    Ok(doc["kind"] == "kiln-golden-image" && doc["boot"]["boot-loader"] == "grub")
}

/// `path` made absolute, if it is a file.
pub(crate) fn existing(what: &'static str, path: &Path, hint: &str) -> Result<PathBuf, BootError> {
    if !path.is_file() {
        return Err(BootError::Missing {
            what,
            path: path.to_owned(),
            hint: hint.to_owned(),
        });
    }
    std::path::absolute(path).map_err(BootError::io("resolve", path))
}

/// The container host's seed folder (`hosts/<host>/seed`, beside its seed images).
pub(crate) fn seed_dir(host: &HostPlan) -> Result<PathBuf, BootError> {
    // `existing` makes the user-data path absolute; its folder is the seed folder.
    let user_data = existing(
        "seed user-data",
        &host.user_data,
        " (a container host boots from its seed folder, which kiln build writes)",
    )?;
    Ok(user_data.parent().map(Path::to_owned).unwrap_or_default())
}

/// Starts the holder of the containers' network namespace and waits until
/// its bridge and tap exist.
fn start_netns(opts: &BootOptions, run_dir: &Path, lifetime: Lifetime) -> Result<Guard, BootError> {
    use std::io::BufRead as _;
    let log = run_dir.join("netns.log");
    let mut cmd = nspawn::holder_command(&opts.tools.unshare);
    let err = File::create(&log).map_err(BootError::io("create", &log))?;
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(err);
    set_lifetime(&mut cmd, lifetime);
    let command = process::display(&cmd);
    let mut child = cmd.spawn().map_err(|e| spawn_error(&cmd, e))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut guard = Guard::child(child, "network namespace");
    // The holder prints one line once ready, or exits (closing stdout) when a step fails.
    let mut line = String::new();
    let _ = std::io::BufReader::new(stdout).read_line(&mut line);
    if line.trim() != nspawn::READY {
        guard.stop();
        return Err(BootError::Command {
            command,
            status: "no bridge and tap".into(),
            stderr: read_tail(&log),
        });
    }
    tracing::info!(pid = guard.pid_of(), "containers' network namespace ready");
    Ok(guard)
}

/// Starts the switch and waits for its control socket; in the holder
/// `netns` pid's namespace, routing through its tap, when containers share
/// the link.
fn start_switch(
    opts: &BootOptions,
    socket: &Path,
    run_dir: &Path,
    lifetime: Lifetime,
    netns: Option<u32>,
) -> Result<Guard, BootError> {
    let mode = match lifetime {
        Lifetime::Tied => SwitchMode::Foreground,
        Lifetime::Detached => SwitchMode::Daemon,
    };
    let pidfile = run_dir.join("vde.pid");
    let log = run_dir.join("vde.log");
    let program = match netns {
        Some(pid) => nspawn::in_netns(&opts.tools.nsenter, pid, &opts.tools.vde_switch),
        None => std::process::Command::new(&opts.tools.vde_switch),
    };
    let tap = netns.map(|_| nspawn::TAP);
    let mut cmd = qemu::switch_command(program, socket, mode, &pidfile, tap);
    let out = File::create(&log).map_err(BootError::io("create", &log))?;
    let err = out.try_clone().map_err(BootError::io("open", &log))?;
    // In the foreground the switch reads commands from stdin and exits at
    // its end: the pipe, left in the guarded child, ties its life to boot's.
    let stdin = match mode {
        SwitchMode::Foreground => Stdio::piped(),
        SwitchMode::Daemon => Stdio::null(),
    };
    cmd.stdin(stdin).stdout(out).stderr(err);
    set_lifetime(&mut cmd, lifetime);
    let command = process::display(&cmd);
    let not_ready = || BootError::SwitchNotReady {
        command: command.clone(),
        socket: socket.to_owned(),
        waited: SWITCH_START,
        stderr: read_tail(&log),
    };
    let deadline = Instant::now() + SWITCH_START;
    let mut child = cmd.spawn().map_err(|e| spawn_error(&cmd, e))?;
    let mut guard = match mode {
        SwitchMode::Foreground => Guard::child(child, "vde_switch"),
        SwitchMode::Daemon => {
            // The started process exits once the daemon has forked.
            let status = child
                .wait()
                .map_err(BootError::io("wait for", &opts.tools.vde_switch))?;
            if !status.success() {
                return Err(BootError::Command {
                    command: command.clone(),
                    status: status.to_string(),
                    stderr: read_tail(&log),
                });
            }
            let pid = loop {
                let pid = std::fs::read_to_string(&pidfile)
                    .ok()
                    .and_then(|p| p.trim().parse::<u32>().ok())
                    .filter(|&p| p > 1);
                match pid {
                    Some(pid) => break pid,
                    None if Instant::now() >= deadline => return Err(not_ready()),
                    None => sleep(Duration::from_millis(50)),
                }
            };
            Guard::pid(pid, "vde_switch")
        }
    };
    let ready = qemu::switch_ready_file(socket);
    while !ready.exists() {
        if !guard.is_running() || Instant::now() >= deadline {
            // Dropping the guard stops a switch that is still running.
            return Err(not_ready());
        }
        sleep(Duration::from_millis(50));
    }
    Ok(guard)
}

fn read_tail(path: &Path) -> String {
    tail_text(&std::fs::read_to_string(path).unwrap_or_default(), 2000)
}

/// How a host runs.
pub(crate) enum Kind {
    /// A QEMU guest on this copy-on-write overlay.
    Qemu(PathBuf),
    /// A QEMU guest booting from the network, with this empty disk.
    Netboot(PathBuf),
    /// A systemd-nspawn container booting from this seed folder.
    Container(PathBuf),
}

/// One guest while it runs.
pub(crate) struct Guest<'a> {
    pub(crate) plan: &'a HostPlan,
    pub(crate) kind: Kind,
    pub(crate) serial_log: PathBuf,
    qemu_log: PathBuf,
    command: String,
    follower: Follower,
    pub(crate) monitor: Monitor,
    started: Instant,
    done_after: Option<Duration>,
    ready_after: Option<Duration>,
}

impl<'a> Guest<'a> {
    /// A guest whose console goes to `<log_dir>/<log_name>.log` (and its QEMU's or nspawn's
    /// own messages to `<log_name>.qemu.log` or `.nspawn.log`).
    pub(crate) fn new(
        plan: &'a HostPlan,
        kind: Kind,
        log_dir: &Path,
        log_name: &str,
    ) -> Result<Self, BootError> {
        let serial_log = log_dir.join(format!("{log_name}.log"));
        let program = match kind {
            Kind::Qemu(_) | Kind::Netboot(_) => "qemu",
            Kind::Container(_) => "nspawn",
        };
        let qemu_log = log_dir.join(format!("{log_name}.{program}.log"));
        // A stale log from an earlier boot must not be mistaken for this one's.
        for stale in [&serial_log, &qemu_log] {
            match std::fs::remove_file(stale) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(BootError::io("remove", stale)(e)),
            }
        }
        Ok(Self {
            plan,
            kind,
            follower: Follower::new(&serial_log),
            serial_log,
            qemu_log,
            command: String::new(),
            monitor: Monitor::new(final_message(plan)),
            started: Instant::now(),
            done_after: None,
            ready_after: None,
        })
    }

    fn status(&self) -> HostStatus {
        HostStatus {
            phase: self.monitor.phase(),
            last_step: self.monitor.last_step(),
            elapsed: self.started.elapsed(),
        }
    }

    /// Feeds new console lines to the monitor; `last` also takes an
    /// unterminated final line (QEMU has exited).
    fn read(&mut self, events: &dyn BootEvents, last: bool) {
        let mut lines = match self.follower.poll() {
            Ok(lines) => lines,
            Err(e) => {
                tracing::warn!(host = %self.plan.name, error = %e, "cannot read serial log");
                Vec::new()
            }
        };
        if last {
            lines.extend(self.follower.take_partial());
        }
        for line in lines {
            let update = self.monitor.line(&line);
            events.console_line(&self.plan.name, &crate::marker::clean_line(&line));
            if let Some(marker) = &update.marker {
                tracing::debug!(host = %self.plan.name, %marker, "marker");
                events.marker(&self.plan.name, marker);
                if marker.is_done() && self.done_after.is_none() {
                    self.done_after = Some(self.started.elapsed());
                }
            }
            if self.monitor.phase() == HostPhase::Ready && self.ready_after.is_none() {
                self.ready_after = Some(self.started.elapsed());
            }
            if update.changed {
                events.host_status(&self.plan.name, &self.status());
            }
        }
    }

    fn fail(&mut self, reason: FailReason, events: &dyn BootEvents) {
        tracing::info!(host = %self.plan.name, %reason, "host failed");
        if self.monitor.fail(reason) {
            events.host_status(&self.plan.name, &self.status());
        }
    }

    /// The failure of a guest that failed, with the end of its console.
    pub(crate) fn failure(&self) -> HostFailure {
        HostFailure {
            host: self.plan.name.clone(),
            reason: self
                .monitor
                .failure()
                .cloned()
                .expect("a failed guest has a reason"),
            serial_log: self.serial_log.clone(),
            last_lines: self.monitor.tail(),
        }
    }

    pub(crate) fn report(&self) -> HostReport {
        HostReport {
            name: self.plan.name.clone(),
            roles: self.plan.roles.clone(),
            phase: self.monitor.phase(),
            markers: self.monitor.markers().to_vec(),
            serial_log: self.serial_log.clone(),
            done_after: self.done_after,
            ready_after: self.ready_after,
            failure: self.monitor.failure().cloned(),
        }
    }
}

/// What ends a host's boot on its console: the seed's own `final_message`
/// when its user-data sets one, else cloud-init's default.
fn final_message(plan: &HostPlan) -> FinalMessage {
    let template = std::fs::read_to_string(&plan.user_data)
        .ok()
        .and_then(|text| serde_saphyr::from_str::<cloud_init_config::CloudConfig>(&text).ok())
        .and_then(|config| config.final_message);
    FinalMessage::from_template(template.as_deref())
}

/// Follows every guest until all are ready or one fails; the index of the
/// first failed guest.
pub(crate) fn follow(
    guests: &mut [Guest<'_>],
    guards: &mut [Guard],
    timeout: Duration,
    events: &dyn BootEvents,
) -> Option<usize> {
    loop {
        for (guest, guard) in guests.iter_mut().zip(guards.iter_mut()) {
            if guest.monitor.phase().is_final() {
                continue;
            }
            guest.read(events, false);
            if guest.monitor.phase().is_final() {
                continue;
            }
            if let Some(status) = guard.try_wait() {
                // Whatever it printed before exiting counts first.
                guest.read(events, true);
                let stderr = tail_text(
                    &std::fs::read_to_string(&guest.qemu_log).unwrap_or_default(),
                    2000,
                );
                tracing::debug!(host = %guest.plan.name, command = %guest.command, "QEMU exited");
                guest.fail(
                    FailReason::QemuExited {
                        status: status.to_string(),
                        stderr,
                    },
                    events,
                );
            } else if guest.started.elapsed() > timeout {
                guest.fail(FailReason::TimedOut(timeout), events);
            }
        }
        if let Some(i) = guests
            .iter()
            .position(|g| g.monitor.phase() == HostPhase::Failed)
        {
            return Some(i);
        }
        if guests.iter().all(|g| g.monitor.phase() == HostPhase::Ready) {
            return None;
        }
        sleep(POLL);
    }
}
