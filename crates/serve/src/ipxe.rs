//! The iPXE scripts: `/boot.ipxe` (chains to the per-MAC script), a known host's script
//! (kernel, initrd, kernel arguments naming its seed URL), and the scripts that stop a machine
//! kiln serve will not boot with a message on its console instead of an error loop.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::site::{Host, Mac};
use crate::tokens::Served;
use crate::Error;

/// The kernel of a netboot folder.
pub const KERNEL: &str = "vmlinuz";
/// The initrd of a netboot folder.
pub const INITRD: &str = "initrd.img";

/// A netboot set (`--netboot DIR`): its top-level files served under `/netboot/`, `vmlinuz` and
/// `initrd.img` booted by the hosts' scripts with the extra kernel arguments.
#[derive(Debug)]
pub struct Netboot {
    /// The folder.
    pub dir: PathBuf,
    /// Its regular files by name, opened at start.
    pub files: BTreeMap<String, (Arc<File>, u64)>,
    /// Extra kernel arguments; `{url}` stands for the server's base URL.
    pub kernel_args: Vec<String>,
}

impl Netboot {
    /// Opens `dir`'s top-level regular files (names of letters, digits, `.`, `_`, `-`); it must
    /// hold [`KERNEL`] and [`INITRD`].
    pub fn open(dir: &Path, kernel_args: Vec<String>) -> Result<Netboot, Error> {
        for a in &kernel_args {
            let ok = !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\'' | '$' | '#' | '\\'));
            if !ok {
                return Err(Error::BadKernelArg { arg: a.clone() });
            }
        }
        let read_err = |source| Error::Read {
            file: dir.to_owned(),
            source,
        };
        let mut files = BTreeMap::new();
        for e in std::fs::read_dir(dir).map_err(read_err)? {
            let e = e.map_err(read_err)?;
            let name = e.file_name().to_string_lossy().into_owned();
            let safe = !name.starts_with('.')
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            let path = e.path();
            // Symlinks are followed: a netboot set may link its kernel from elsewhere.
            let md = std::fs::metadata(&path).map_err(|source| Error::Read {
                file: path.clone(),
                source,
            })?;
            if !safe || !md.is_file() {
                continue;
            }
            let f = File::open(&path).map_err(|source| Error::Read { file: path, source })?;
            files.insert(name, (Arc::new(f), md.len()));
        }
        for name in [KERNEL, INITRD] {
            if !files.contains_key(name) {
                return Err(Error::NetbootMissing {
                    dir: dir.to_owned(),
                    name,
                });
            }
        }
        Ok(Netboot {
            dir: dir.to_owned(),
            files,
            kernel_args,
        })
    }
}

/// `/boot.ipxe`: chain to this machine's own script by the MAC of the interface iPXE booted
/// from (`netX`: the last one opened); a failed chain drops to the shell, never a loop.
pub fn boot_script(base: &str) -> String {
    format!(
        "#!ipxe\n\
         echo kiln serve: asking {base} for this machine's script (MAC ${{netX/mac:hexhyp}})\n\
         chain {base}/ipxe/${{netX/mac:hexhyp}} || goto failed\n\
         :failed\n\
         echo kiln serve: could not load {base}/ipxe/${{netX/mac:hexhyp}}; dropping to the iPXE shell\n\
         shell\n"
    )
}

/// A known host's script: kernel and initrd from `/netboot/`, its seed URL in the kernel
/// arguments (cloud-init's `ds=nocloud-net;s=<url>/`).
pub fn host_script(
    base: &str,
    host: &Host,
    seed_token: &str,
    cluster: &str,
    nb: &Netboot,
) -> String {
    let mut args = vec![
        format!("initrd={INITRD}"),
        format!("ds=nocloud-net;s={base}/seed/{seed_token}/"),
    ];
    args.extend(nb.kernel_args.iter().map(|a| a.replace("{url}", base)));
    format!(
        "#!ipxe\n\
         echo kiln serve: {name} ({mac}) of cluster {cluster}\n\
         kernel {base}/netboot/{KERNEL} {args}\n\
         initrd {base}/netboot/{INITRD}\n\
         boot\n",
        name = host.name,
        mac = host.mac.hexhyp(),
        args = args.join(" "),
    )
}

/// Stops a machine with `lines` on its console and the iPXE shell (a person at the console
/// can `chain` again once the cause is fixed; nothing retries on its own).
fn stop_script(lines: &[String]) -> String {
    let mut s = String::from("#!ipxe\n");
    for l in lines {
        // `$` would start a setting's expansion; the texts come from kiln, but stay literal.
        s.push_str(&format!("echo {}\n", l.replace('$', "")));
    }
    s.push_str("shell\n");
    s
}

/// The script for a MAC no host of the build has.
pub fn unknown_mac_script(base: &str, mac: &Mac, cluster: &str) -> String {
    stop_script(&[
        format!(
            "kiln serve: no host of cluster {cluster} has MAC {}.",
            mac.hexhyp()
        ),
        // No quotes: iPXE's command line would take them as quoting.
        format!(
            "Set mac = {mac} in its [[host]] table of cluster.toml, rebuild and restart kiln serve,"
        ),
        format!("then type: chain {base}/boot.ipxe"),
    ])
}

/// The script for a known host whose one-time secrets URL was used.
pub fn used_script(host: &Host, served: &Served, at: &str) -> String {
    stop_script(&[
        format!(
            "kiln serve: {} ({}): its one-time secrets URL was used at {at} by {}.",
            host.name,
            host.mac.hexhyp(),
            served.client
        ),
        format!(
            "To provision it again, restart kiln serve with --reissue {} (and find out who used it if it was not this machine).",
            host.name
        ),
    ])
}

/// The script for a known host when kiln serve has no netboot set.
pub fn no_netboot_script(host: &Host) -> String {
    stop_script(&[format!(
        "kiln serve: {} ({}) is known, but kiln serve was started without --netboot DIR (a kernel and initrd to boot).",
        host.name,
        host.mac.hexhyp()
    )])
}
