#!/bin/sh
# Checks the repository's Vagrantfile with `vagrant validate` against a sample
# vagrant.json shaped like `kiln build` writes it (or against OUT/<cluster> given as
# $1): for the libvirt provider (Debian's vagrant-libvirt plugin) and the VirtualBox
# provider (its config checks need only `VBoxManage --version`, answered by a stub
# when VirtualBox is not installed: Debian 12 does not ship it), then that a missing
# vagrant.json or seed is refused with a message naming it.
set -eu
cd "$(dirname "$0")/../.."
# shellcheck source=tests/e2e/packages.sh
. tests/e2e/packages.sh
e2e_need vagrant vagrant-libvirt

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Vagrant's state and plugins' data stay in the temp folder, never in the checkout.
export VAGRANT_DOTFILE_PATH="$tmp/dot" VAGRANT_CHECKPOINT_DISABLE=1 VAGRANT_NO_COLOR=1

if [ $# -gt 0 ]; then
    out=$(readlink -f "$1")
else
    out="$tmp/out/lab"
    for h in etcd1 etcd2 runtime1; do
        mkdir -p "$out/hosts/$h" && : >"$out/hosts/$h/cidata.iso"
    done
    cat >"$out/vagrant.json" <<'JSON'
{"cluster":"lab","network":{"cidr":"10.77.0.0/24","gateway":null},
 "hosts":[
  {"name":"etcd1","ip":"10.77.0.11","mac":"52:54:00:77:00:11","os":"debian12","roles":["etcd"],
   "seed_iso":"hosts/etcd1/cidata.iso","seed_img":"hosts/etcd1/cidata.img","memory_mb":1024,"cpus":1},
  {"name":"etcd2","ip":"10.77.0.12","mac":"52:54:00:77:00:12","os":"debian12","roles":["etcd"],
   "seed_iso":"hosts/etcd2/cidata.iso","seed_img":null,"memory_mb":1024,"cpus":1},
  {"name":"runtime1","ip":"10.77.0.21","mac":"52:54:00:77:00:21","os":"debian12","roles":["runtime"],
   "seed_iso":"hosts/runtime1/cidata.iso","seed_img":"hosts/runtime1/cidata.img","memory_mb":2048,"cpus":2}]}
JSON
fi

mkdir -p "$tmp/bin"
if ! command -v VBoxManage >/dev/null 2>&1; then
    # shellcheck disable=SC2016 # the stub's own $1
    printf '#!/bin/sh\n[ "$1" = --version ] && echo 7.0.14r161095\n' >"$tmp/bin/VBoxManage"
    chmod 755 "$tmp/bin/VBoxManage"
fi

passed=0 failed=0
check() { # check NAME EXPECTED-EXIT GREP-PATTERN -- env/command...
    name=$1 want=$2 pattern=$3
    shift 4
    if got=$(env "$@" 2>&1); then rc=0; else rc=$?; fi
    if { [ "$want" = 0 ] && [ "$rc" = 0 ]; } || { [ "$want" != 0 ] && [ "$rc" != 0 ]; }; then
        if printf '%s\n' "$got" | grep -q -- "$pattern"; then
            echo "ok   $name"; passed=$((passed + 1)); return
        fi
    fi
    echo "FAIL $name (exit $rc, expected output matching '$pattern'):"
    printf '%s\n' "$got" | sed 's/^/     /'
    failed=$((failed + 1))
}

check "libvirt provider" 0 "validated successfully" -- \
    KILN_OUT="$out" VAGRANT_DEFAULT_PROVIDER=libvirt vagrant validate
check "virtualbox provider" 0 "validated successfully" -- \
    PATH="$tmp/bin:$PATH" KILN_OUT="$out" VAGRANT_DEFAULT_PROVIDER=virtualbox vagrant validate
# Host names are [A-Za-z0-9._-]: one word each.
# shellcheck disable=SC2013
for host in $(grep -o '"name": *"[^"]*"' "$out/vagrant.json" | sed 's/.*"\([^"]*\)"$/\1/'); do
    check "a VM for $host" 0 ",$host,metadata,provider,libvirt" -- \
        KILN_OUT="$out" VAGRANT_DEFAULT_PROVIDER=libvirt vagrant status --machine-readable
done
mkdir -p "$tmp/empty"
check "missing vagrant.json is named" 1 "$tmp/empty/vagrant.json does not exist" -- \
    KILN_OUT="$tmp/empty" VAGRANT_DEFAULT_PROVIDER=libvirt vagrant validate
if [ $# -eq 0 ]; then
    rm "$out/hosts/etcd2/cidata.iso"
    check "missing seed is named" 1 "hosts/etcd2/cidata.iso does not exist (host etcd2)" -- \
        KILN_OUT="$out" VAGRANT_DEFAULT_PROVIDER=libvirt vagrant validate
fi

echo "vagrant-validate: $passed passed, $failed failed"
[ "$failed" = 0 ]
