#!/bin/bash
# Builds the Debian 12 guest image kiln's tests boot (and users may boot): a plain
# systemd + cloud-init (NoCloud only) system with a cloud kernel and curl (as most installs
# have; install.sh fetches bundles with it from a `bundle-sources` server), no role payload —
# everything role-specific must arrive through kiln's bundles.
#
# Usage: tests/e2e/guest-image.sh [OUTDIR]    (or KILN_GUEST_DIR=OUTDIR)
# Default OUTDIR: /var/tmp/kiln-guest/<first 16 hex of this script's sha256>/, i.e.
# cached outside the clone and rebuilt only when this script changes.
# OUTDIR gets: rootfs/ (for systemd-nspawn), disk.qcow2 (ext4, label rootfs, made with
# mke2fs -d: no loop mount), vmlinuz and initrd.img (for qemu -kernel/-initrd).
# Each output is renamed into place only once complete, so a killed run is resumed
# and a complete folder is reused as is. The last line printed is OUTDIR.
# Needs root, mmdebstrap, e2fsprogs, qemu-utils (qemu-img) and flock (util-linux).
set -euo pipefail

script=$(readlink -f "$0")
hash=$(sha256sum "$script" | cut -c1-16)
out=${1:-${KILN_GUEST_DIR:-/var/tmp/kiln-guest/$hash}}
suite=bookworm
arch=$(dpkg --print-architecture)

die() { echo "guest-image: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (mmdebstrap --mode=root, device nodes in the tree)"
for tool in mmdebstrap mke2fs qemu-img flock; do
    command -v "$tool" >/dev/null || die "missing $tool (apt-get install mmdebstrap e2fsprogs qemu-utils util-linux)"
done

# The machine's configured Debian mirror, never a host name written here: every `deb`
# entry of apt's sources (one-line .list and deb822 .sources) whose suite is a Debian
# release, its -updates or its -security, mapped onto the same pocket of $suite.
mirror_entries() {
    local files=()
    [ -f /etc/apt/sources.list ] && files+=(/etc/apt/sources.list)
    for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] && files+=("$f")
    done
    [ ${#files[@]} -gt 0 ] || return 0
    awk -v suite="$suite" '
        function emit(types, uris, suites, comps,   t, u, s, nt, nu, ns, i, j, pocket) {
            if (types !~ /(^|[ \t])deb([ \t]|$)/ || comps !~ /(^|[ \t])main([ \t]|$)/) return
            nu = split(uris, u, /[ \t]+/); ns = split(suites, s, /[ \t]+/)
            for (i = 1; i <= nu; i++) for (j = 1; j <= ns; j++) {
                if (s[j] !~ /^(bullseye|bookworm|trixie|forky|sid|stable|testing|unstable)(-updates|-security)?$/) continue
                pocket = s[j]; sub(/^[a-z]+/, "", pocket)
                if (u[i] != "" && !seen[u[i] suite pocket]++) print "deb " u[i] " " suite pocket " main"
            }
        }
        function flush() { if (uris != "" && enabled) emit(types, uris, suites, comps); types = uris = suites = comps = ""; enabled = 1 }
        BEGIN { enabled = 1 }
        FILENAME ~ /\.sources$/ {
            if (FNR == 1) flush()
            if ($0 ~ /^[ \t]*$/) { flush(); next }
            if ($0 ~ /^#/) next
            key = tolower($1); val = $0; sub(/^[^:]*:[ \t]*/, "", val)
            if (key == "types:") types = val; else if (key == "uris:") uris = val
            else if (key == "suites:") suites = val; else if (key == "components:") comps = val
            else if (key == "enabled:" && tolower(val) == "no") enabled = 0
            next
        }
        { flush() }
        /^[ \t]*deb[ \t]/ {
            line = $0; sub(/\[[^]]*\]/, "", line); sub(/^[ \t]+/, "", line); sub(/#.*/, "", line)
            n = split(line, f, /[ \t]+/)
            c = ""; for (k = 4; k <= n; k++) c = c " " f[k]
            emit("deb", f[2], f[3], c)
        }
        END { flush() }
    ' "${files[@]}"
}

# The mmdebstrap recipe of E2E-NOTES.md; the hooks below are the ones that mattered.
build_rootfs() {
    local dest=$1 entries
    entries=$(mirror_entries)
    [ -n "$entries" ] || die "no Debian mirror found in /etc/apt/sources.list{,.d/*.list,.d/*.sources}"
    local -a mirrors
    mapfile -t mirrors <<<"$entries"
    # A killed mmdebstrap may leave /proc or /dev mounted in the old tree: never descend.
    rm -rf --one-file-system "$dest"
    # shellcheck disable=SC2016 # the hooks are run by mmdebstrap, with $1 = the tree
    mmdebstrap --mode=root --variant=minbase --architectures="$arch" \
        --include="systemd,systemd-sysv,udev,dbus,iproute2,cloud-init,linux-image-cloud-$arch,initramfs-tools,ifupdown,isc-dhcp-client,procps,openssl,tar,gzip,coreutils,curl" \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-include=/usr/share/locale/locale.alias' \
        --essential-hook='set -e
            # Before the kernel is installed, so its postinst builds the small initrd once:
            # only the modules listed (virtio disk); ext4 is built into Debian kernels.
            mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/etc/initramfs-tools/hooks"
            echo MODULES=list > "$1/etc/initramfs-tools/conf.d/kiln.conf"
            printf "%s\n" "#!/bin/sh" "[ \"\$1\" = prereqs ] && exit 0" \
                ". /usr/share/initramfs-tools/hook-functions" \
                "force_load virtio_pci" "force_load virtio_blk" \
                > "$1/etc/initramfs-tools/hooks/kiln-virtio"
            chmod 0755 "$1/etc/initramfs-tools/hooks/kiln-virtio"' \
        --customize-hook='set -e
            # mmdebstrap leaves the build host'"'"'s resolver and hosts: etcd then fails
            # to resolve localhost. The guests have no DNS unless a seed gives one.
            printf "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" > "$1/etc/hosts"
            : > "$1/etc/resolv.conf"
            # A fresh machine-id per boot (systemd creates it), never one shared by clones.
            : > "$1/etc/machine-id"; rm -f "$1/var/lib/dbus/machine-id"
            # QEMU boots with `root=/dev/vda ro`: this remounts it rw. A container (nspawn)
            # gets its root from the host, where the label cannot be resolved.
            echo "LABEL=rootfs / ext4 rw,errors=remount-ro 0 1" > "$1/etc/fstab"
            mkdir -p "$1/etc/systemd/system/systemd-remount-fs.service.d"
            printf "[Unit]\nConditionVirtualization=!container\n" \
                > "$1/etc/systemd/system/systemd-remount-fs.service.d/kiln-not-in-container.conf"
            # cloud-init: only NoCloud (seed folder, CIDATA disk, nocloud-net), no probing.
            # C.UTF-8 is built into libc: no locales package, no failing cc_locale; no sshd
            # in the image, so no host keys to generate: an empty ssh_keys (the schema of cloud-init
            # refuses an empty ssh_genkeytypes and warns on every boot) makes cc_ssh make none.
            printf "datasource_list: [ NoCloud, None ]\nlocale: C.UTF-8\nssh_keys: {}\n" > "$1/etc/cloud/cloud.cfg.d/90-kiln.cfg"
            # mmdebstrap copies the build host'"'"'s name; the seed or the container names the guest.
            rm -f "$1/etc/hostname"
            # Timers and jobs that only cost time in a short-lived test guest.
            for u in apt-daily.timer apt-daily-upgrade.timer apt-daily.service apt-daily-upgrade.service \
                     dpkg-db-backup.timer dpkg-db-backup.service e2scrub_all.timer e2scrub_all.service \
                     e2scrub_reap.service fstrim.timer fstrim.service systemd-pstore.service getty@tty1.service; do
                ln -sf /dev/null "$1/etc/systemd/system/$u"
            done
            # Nested KVM hangs on these machines; guests never need it.
            printf "blacklist kvm\nblacklist kvm_amd\nblacklist kvm_intel\n" > "$1/etc/modprobe.d/kiln-no-kvm.conf"' \
        "$suite" "$dest" "${mirrors[@]}"
}

mkdir -p "$out"
exec 9>"$out/.lock"
flock 9 # one builder per folder; a second caller waits, then reuses the result

if [ ! -d "$out/rootfs" ]; then
    echo "guest-image: building $out/rootfs" >&2
    build_rootfs "$out/rootfs.part" >&2
    mv "$out/rootfs.part" "$out/rootfs"
fi
for f in vmlinuz initrd.img; do
    if [ ! -f "$out/$f" ]; then
        src=$(readlink -f "$out/rootfs/$f" 2>/dev/null || true)
        [ -f "$src" ] || src=$(printf '%s\n' "$out"/rootfs/boot/"${f%.img}"-* | sort -V | tail -n1)
        [ -f "$src" ] || die "no $f in $out/rootfs/boot"
        cp "$src" "$out/$f.part" && mv "$out/$f.part" "$out/$f"
    fi
done
if [ ! -f "$out/disk.qcow2" ]; then
    echo "guest-image: building $out/disk.qcow2" >&2
    rm -f "$out/disk.raw"
    mke2fs -q -t ext4 -L rootfs -d "$out/rootfs" "$out/disk.raw" 2G
    qemu-img convert -O qcow2 "$out/disk.raw" "$out/disk.qcow2.part"
    rm -f "$out/disk.raw"
    mv "$out/disk.qcow2.part" "$out/disk.qcow2"
fi
echo "$out"
