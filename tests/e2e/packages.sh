#!/bin/sh
# Sourced by the e2e scripts: installs the Debian packages they need when missing,
# the way scripts/setup does for the unit tests.
#
# qemu-system-x86 comes from the machine's own release. A machine whose qemu-utils
# came from a newer suite (backports) cannot install it beside that qemu-utils
# (qemu-utils >= 8 breaks qemu-system-common 7.x), so qemu-utils is then moved to the
# release's version too (--allow-downgrades): qemu-img 7.2 does all kiln needs.

# e2e_need PACKAGE...: installs the Debian packages that are not installed.
e2e_need() {
    missing=""
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' ||
            missing="$missing $pkg"
    done
    [ -n "$missing" ] || return 0
    [ "$(id -u)" = 0 ] || { echo "e2e: missing Debian packages:$missing (install them as root)" >&2; return 1; }
    # shellcheck source=/dev/null
    codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
    case " $missing " in
    *" qemu-system-x86 "*)
        # qemu-utils from the same release, whatever is installed (see above).
        missing="$(echo " $missing " | sed 's/ qemu-utils / /') qemu-utils/$codename"
        ;;
    esac
    echo "e2e: installing$missing"
    apt-get update -q
    # shellcheck disable=SC2086 # one word per package
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends --allow-downgrades $missing
}
