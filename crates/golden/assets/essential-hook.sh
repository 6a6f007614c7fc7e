set -e
# Run by mmdebstrap once the essential packages are in, with $1 = the root tree: before the
# kernel is installed, so its postinst builds the small initrd once (only the modules listed:
# the virtio disk; ext4 is built into Debian kernels).
mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/etc/initramfs-tools/hooks"
echo MODULES=list > "$1/etc/initramfs-tools/conf.d/kiln.conf"
# shellcheck disable=SC2016 # the hook file is written, not run, here
printf '%s\n' '#!/bin/sh' '[ "$1" = prereqs ] && exit 0' \
    '. /usr/share/initramfs-tools/hook-functions' \
    'force_load virtio_pci' 'force_load virtio_blk' \
    > "$1/etc/initramfs-tools/hooks/kiln-virtio"
chmod 0755 "$1/etc/initramfs-tools/hooks/kiln-virtio"
