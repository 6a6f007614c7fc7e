#!/bin/sh
# kiln's end-to-end tests, the slow tier CI runs after the unit tests:
#   1. the Vagrantfile passes `vagrant validate` (tests/e2e/vagrant-validate.sh);
#   2. real QEMU guests (software emulation, no network but their own private
#      switch): two stand-in hosts reach each other from VFAT seeds, then the
#      lab example is built with `kiln build --seed-rerun` and its six hosts
#      are booted together, runtime1 as a QEMU guest from its ISO seed and the
#      3 etcd and 2 lb hosts as systemd-nspawn containers of the same image
#      on the same link (`kiln boot --containers`), from their seed folders,
#      which carry no bundles: a docker-registry on the link (`--link-service`)
#      serves them, but for the runtime bundle, which comes from the shared medium;
#      every host must report its role healthy, a second install.sh run must
#      change nothing, and the lb hosts' VIP must answer and move when the
#      keepalived holding it stops; then day 2 on the same hosts: generation 2 (a template and
#      a package changed) rolled out in `kiln diff --plan`'s order, each host shut down and
#      started again on its own disk with its new seed, and a generation 3 whose etcd health
#      fails, rolled back by install.sh on its first host, which stops the upgrade;
#   3. the k8s example (seed 001's shape) the same way: master01, master02, lb01 and lb02 as
#      containers (the three etcd members among them), node01 and node02 as QEMU guests; the
#      nodes join by TLS bootstrap and go Ready, two pods on two nodes reach each other over
#      flannel, the Service answers on its ClusterIP (IPVS) from a pod and from each node, CoreDNS
#      resolves, `kubectl logs` and `exec` work, and the API answers through the VIP with
#      master01's API server stopped (crates/boot/tests/e2e/);
#   4. the golden image: `kiln image` of examples/golden (cached in /var/tmp/kiln-golden-image/
#      by its inputs: the build is reproducible), its disk booted alone through the BIOS, etcd1
#      booted by `kiln boot` as a QEMU guest from the image's qcow2 through UEFI (OVMF, GRUB),
#      and etcd2 in the same boot from the network (an empty
#      disk, QEMU's iPXE ROM, `kiln serve --dhcp` on the link, the image's live root): one etcd
#      cluster; a replayed secrets URL and an unknown MAC get nothing (about 3-5 min);
#   5. last, when CI's time allows (see below): the kubeadm example, master01 and
#      node01 as QEMU guests: `kubeadm init` and `join` from kiln's seeds, both Ready, pods on both
#      reach each other over flannel, the Service's ClusterIP and CoreDNS answer, nothing pulled.
# `cargo test` alone lists the VM tests as ignored; this script runs them.
#
# Usage: tests/e2e/run.sh [TEST-NAME-FILTER]
# Environment: KILN_GUEST (a guest image folder; default: built or reused by
# tests/e2e/guest-image.sh), CARGO_TARGET_DIR, KILN_E2E_KUBEADM (1: the kubeadm cluster
# whatever the time; 0: never; default: when CI's budget holds it), KILN_CI_STARTED.
# Budget, 2 cores, quiet machine: about 27 minutes without the kubeadm cluster (the lab: about
# 10 min, most of it runtime1's TCG guest, twice; the k8s cluster: 11 min, most of it the nodes'
# TCG guests; the golden image's guests and the pair a few more), 18 more with the kubeadm one.
set -eu
cd "$(dirname "$0")/../.."
repo=$PWD
# shellcheck source=tests/e2e/packages.sh
. tests/e2e/packages.sh
started=$(date +%s)
stamp() { echo "e2e: [$(($(date +%s) - started))s] $*"; }

e2e_need qemu-system-x86 qemu-utils vde2 mmdebstrap e2fsprogs util-linux vagrant vagrant-libvirt

stamp "vagrant validate"
tests/e2e/vagrant-validate.sh

if [ -z "${KILN_GUEST:-}" ]; then
    stamp "guest image (tests/e2e/guest-image.sh)"
    # Its last line is the image folder; the rest is progress.
    log=$(mktemp)
    tests/e2e/guest-image.sh | tee "$log"
    KILN_GUEST=$(tail -n 1 "$log")
    rm -f "$log"
    # The pipe hides the script's exit status: a failed build leaves no image folder.
    if [ ! -f "$KILN_GUEST/disk.qcow2" ]; then
        echo "e2e: tests/e2e/guest-image.sh made no guest image (its output is above)" >&2
        exit 1
    fi
fi
export KILN_GUEST
stamp "guest image: $KILN_GUEST"

# The test suite's own build (Cargo.toml's dev profile: dependencies optimised), not a release
# build of the whole dependency tree again.
stamp "kiln build"
cargo build -q -p kiln
KILN_BIN=$(readlink -f "${CARGO_TARGET_DIR:-$repo/target}/debug/kiln")
export KILN_BIN KILN_E2E=1

# Free space first: each test's QEMU disk overlays and builds take several GB under TMPDIR, and
# a full disk shows only as guests' I/O errors in the middle of an install.
tmp=${TMPDIR:-/tmp}
free_gib=$(($(df -Pk "$tmp" | awk 'NR == 2 { print $4 }') / 1024 / 1024))
if [ "$free_gib" -lt 10 ]; then
    echo "e2e: only $free_gib GiB free in $tmp: the VM tests need about 10 (guest disks, builds)" >&2
    exit 1
fi

stamp "VM tests"
# One at a time: each test's guests already share the 2 cores.
vm_tests() { cargo test -q -p kiln-boot --test e2e -- --ignored --nocapture --test-threads=1 "$@"; }
if [ $# -gt 0 ]; then
    vm_tests "$1"
else
    vm_tests --skip kubeadm::
    # The kubeadm cluster (crates/boot/tests/e2e/kubeadm.rs: its control plane, kubelet and all,
    # under software emulation: 18 minutes on a quiet machine) comes last. It runs unless CI's
    # 90 minutes cannot hold it: KILN_CI_STARTED (set by .ci/run and scripts/test) says when the
    # run began; the cluster is given 25 minutes within 87, and its time limits end at minute
    # 87 (KILN_E2E_DEADLINE). A machine that built the Go binaries and the dependency tree cold
    # during this run is past that point; one with them cached is not.
    # KILN_E2E_KUBEADM=1 runs it whatever the time, 0 never.
    budget=$((87 * 60)) need=$((25 * 60))
    began=${KILN_CI_STARTED:-$(date +%s)}
    used=$(($(date +%s) - began))
    case "${KILN_E2E_KUBEADM:-auto}" in
    0) stamp "kubeadm cluster: not run (KILN_E2E_KUBEADM=0)" ;;
    1) vm_tests kubeadm:: ;;
    *)
        if [ $((used + need)) -gt "$budget" ]; then
            stamp "kubeadm cluster: NOT RUN: $((used / 60)) min of CI's budget used, it needs about $((need / 60)) more (KILN_E2E_KUBEADM=1 runs it anyway)"
        else
            KILN_E2E_DEADLINE=$((began + budget)) vm_tests kubeadm::
        fi
        ;;
    esac
fi
stamp "done"
