set -e
# Run by mmdebstrap at the end, with $1 = the root tree. The settings of the e2e's guest image.
# mmdebstrap leaves the build host's resolver and hosts: etcd then fails to resolve localhost.
# Hosts have no DNS unless a seed gives one.
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$1/etc/hosts"
: > "$1/etc/resolv.conf"
chmod 0644 "$1/etc/hosts" "$1/etc/resolv.conf"
# A fresh machine-id per boot (systemd creates it), never one shared by clones.
: > "$1/etc/machine-id"
rm -f "$1/var/lib/dbus/machine-id"
# The sources named kiln's temporary repository: the image has no apt source (air-gapped).
rm -f "$1/etc/apt/sources.list"
# The build's own apt settings (no download sandbox) are not the host's.
rm -f "$1/etc/apt/apt.conf.d/99mmdebstrap"
find "$1/etc/apt/sources.list.d" -mindepth 1 -delete
# QEMU boots with `root=/dev/vda ro`: this remounts it rw. A container (nspawn) gets its root
# from the host, where the label cannot be resolved.
echo 'LABEL=rootfs / ext4 rw,errors=remount-ro 0 1' > "$1/etc/fstab"
mkdir -p "$1/etc/systemd/system/systemd-remount-fs.service.d"
printf '[Unit]\nConditionVirtualization=!container\n' \
    > "$1/etc/systemd/system/systemd-remount-fs.service.d/kiln-not-in-container.conf"
# cloud-init: only NoCloud (seed folder, CIDATA disk, nocloud-net), no probing. C.UTF-8 is
# built into libc: no locales package, no failing cc_locale; no sshd in the image, so no host
# keys to generate: an empty ssh_keys (cloud-init's schema refuses an empty ssh_genkeytypes and
# warns on every boot) makes cc_ssh make none.
printf 'datasource_list: [ NoCloud, None ]\nlocale: C.UTF-8\nssh_keys: {}\n' \
    > "$1/etc/cloud/cloud.cfg.d/90-kiln.cfg"
# mmdebstrap copies the build host's name; the seed names the host.
rm -f "$1/etc/hostname"
# Timers and jobs that only cost time on a freshly provisioned host.
for u in apt-daily.timer apt-daily-upgrade.timer apt-daily.service apt-daily-upgrade.service \
         dpkg-db-backup.timer dpkg-db-backup.service e2scrub_all.timer e2scrub_all.service \
         e2scrub_reap.service fstrim.timer fstrim.service systemd-pstore.service getty@tty1.service; do
    ln -sf /dev/null "$1/etc/systemd/system/$u"
done
# Nested KVM hangs on the machines kiln's tests run on; hosts of a cluster never need it.
printf 'blacklist kvm\nblacklist kvm_amd\nblacklist kvm_intel\n' > "$1/etc/modprobe.d/kiln-no-kvm.conf"
# Caches whose content depends on the build machine, not the packages.
rm -f "$1/var/cache/ldconfig/aux-cache" "$1/var/lib/dpkg/status-old" "$1/var/lib/dpkg/diversions-old" \
    "$1/var/cache/debconf/config.dat-old" "$1/var/cache/debconf/templates.dat-old"
