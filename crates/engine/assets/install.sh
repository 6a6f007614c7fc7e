#!/bin/sh
# kiln install.sh: installs this host's role bundles from one kiln build.
#
#   sh install.sh --dir DIR --secrets-sha256 SHA256 [--source SOURCE]... [--signing-key PUB]
#
# PUB (default /etc/kiln/signing.pub under KILN_ROOT, if present; the seed places it) is the
# cluster's public key: the secrets archive's HOST and BUNDLES must carry its signature.
#
# DIR holds secrets.tar.gz (this host's, pinned by SHA256 in the seed) and the role
# bundles its BUNDLES member names. A bundle not in DIR is taken from the first SOURCE that
# has it with the pinned digest: `medium` (a medium labelled KILNBUNDLE holding bundles/,
# mounted read-only), `http(s)://…` (a served out folder: <url>/bundles/<file>), or
# `oci://host[:port]/repo` (`oci+http://` for plain HTTP: the registry's blob API by digest,
# anonymous or with an anonymous bearer token), with curl or wget. Copies are checked before
# they are kept, in KILN_DOWNLOAD_DIR (default $KILN_STATE_DIR/downloads), where a rerun finds
# them: the only files written before preflight. Environment: KILN_ROOT (install under another
# root, default /), KILN_STATE_DIR (default $KILN_ROOT/var/lib/kiln),
# KILN_BUNDLE_MEDIUM (a folder to use as the `medium` source instead of mounting one),
# KILN_HTTP_CLIENT=curl|wget (default: curl if present), KILN_ALLOW_DOWNGRADE=1, KILN_NO_SYSTEMCTL=1, KILN_CONSOLE (a file or device that gets
# a copy of the markers), KILN_EXPECT_HOST (instead of `uname -n`), KILN_LOCK_WAIT (seconds
# to wait for another install.sh holding the lock, default 60), KILN_HEALTH_WAIT /
# KILN_HEALTH_TRIES / KILN_HEALTH_INTERVAL / KILN_HEALTH_TIMEOUT (each role's HEALTH is
# retried 2 s apart, 30 s each try, for up to 900 s of wall time; TRIES also caps the tries),
# KILN_TEST_KILL_AT=<step> (tests: kill -9 ourselves right after that step's marker; also
# `switched`: in the install step, right after the files are renamed into place).
#
# Every step prints exactly one marker `KILN <step> ok|fail <details>`, in this order:
# verify list preflight extract manifest prep packages install images units health state
# done. Nothing is written under KILN_ROOT (not even staging) before preflight has passed.
# From extract on, one install.sh at a time holds a lock (flock on the state folder); a
# second one waits up to KILN_LOCK_WAIT seconds, then refuses naming the holder's pid. A
# write that fails (a full disk) fails its step naming the path, and the files of this run
# not yet switched in are removed: the host keeps its previous files and state. The state
# folder lists the files and units each generation installed: the next one stops and disables
# the units it no longer has and removes such files (`KILN install ok … removed=N
# retired=UNIT,…`). A run adds its files to that list before it switches any in, so the files of
# a run killed midway are removed by the next run that does not have them. The inputs of the
# converged generation and of the one before it are kept in $KILN_STATE_DIR/kept/<build id>/;
# an upgrade whose health check fails reinstalls the installed generation from there (`KILN
# rollback ok|fail …`) and exits 1. Every step is idempotent, files are switched by rename and
# the state is written last, so a run killed anywhere converges when rerun; a rerun on a
# converged host changes nothing and ends with `KILN done ok ... unchanged`.
#
# POSIX sh (dash, busybox sh, bash); needs coreutils, tar, gzip, sed, awk, grep, findutils
# and flock (util-linux); systemctl when a bundle has units, timeout when it has a health
# check, dpkg or rpm only when it carries packages, ctr or docker only when it carries
# images. A missing tool is named by `KILN preflight fail missing tools: …`, all at once.
set -eu
umask 077 # staging holds keys; installed files get their MANIFEST mode explicitly
export LC_ALL=C

STEP=verify FAILED=0 CHANGED=0 DIR='' SECRETS_SHA='' WORK='' SOURCES='' ROOM_KIB=0
R=${KILN_ROOT:-/}
R=${R%/} # "" for /, so "$R/etc" is always right
STATE_DIR=${KILN_STATE_DIR:-$R/var/lib/kiln}
STAGING=$STATE_DIR/staging
DOWNLOADS=${KILN_DOWNLOAD_DIR:-$STATE_DIR/downloads}

say() { # one marker line on stdout and, best effort, on the console
    printf 'KILN %s\n' "$*"
    if [ -n "${KILN_CONSOLE:-}" ]; then
        { printf 'KILN %s\n' "$*" >>"$KILN_CONSOLE"; } 2>/dev/null || :
    fi
}
ok() {
    say "$STEP ok $*"
    kill_point "$STEP"
}
kill_point() { if [ "${KILN_TEST_KILL_AT:-}" = "$1" ]; then kill -9 $$; fi; }
fail() { FAILED=1; say "$STEP fail $*"; exit 1; }
on_exit() {
    if [ -n "$WORK" ]; then rm -rf "$WORK"; fi
    if [ "$(cat "$STATE_DIR/lock.pid" 2>/dev/null)" = $$ ]; then rm -f "$STATE_DIR/lock.pid"; fi
    if [ "$1" -ne 0 ] && [ "$FAILED" = 0 ]; then say "$STEP fail unexpected error (exit $1), see the messages above"; fi
}
trap 'on_exit $?' EXIT
trap 'exit 130' INT TERM HUP

sha_of() { sha256sum "$1" | cut -d ' ' -f 1; }
is_sha() { printf '%s\n' "$1" | grep -Eqx '[0-9a-f]{64}'; }
kv() { # value of KEY=value in FILE (last one wins), surrounding quotes removed
    sed -n "s/^$2=//p" "$1" | tail -n 1 | sed -e 's/^"\(.*\)"$/\1/' -e "s/^'\(.*\)'\$/\1/"
}
lines() { grep -v -e '^[[:space:]]*$' -e '^[[:space:]]*#' "$1" || :; } # meaningful lines of a list file
last_line() { tail -n 1 "$1" 2>/dev/null | cut -c 1-200; }
live() { [ -z "$R" ]; } # installing onto the running system, not under KILN_ROOT
in_container() { [ -s /run/systemd/container ] || [ -n "${container:-}" ] || [ -f /.dockerenv ]; }
use_systemctl() { [ "${KILN_NO_SYSTEMCTL:-0}" != 1 ]; }

replace_file() { sync && mv -f "$1" "$2"; } # $1 (same folder) atomically over $2, durable first
mkparents() { # creates missing parent folders of $1 with mode 0755 (umask is 077)
    set -- "${1%/*}"
    if [ -n "$1" ] && [ ! -d "$1" ]; then
        mkparents "$1"
        # Another install.sh may create it at the same moment (before either holds the lock).
        mkdir -m 0755 "$1" 2>/dev/null || [ -d "$1" ] || fail "cannot create folder $1"
    fi
}
# One installer at a time, from the first write to the end: flock(1) on the state folder,
# released by the kernel when the holder exits or is killed, so no lock can go stale.
# lock.pid names the holder for a waiting run; the state is read again under the lock.
lock() {
    mkparents "$STAGING/x"
    exec 9<"$STATE_DIR"
    if ! flock -n 9; then
        holder=$(cat "$STATE_DIR/lock.pid" 2>/dev/null || :) wait=${KILN_LOCK_WAIT:-60}
        echo "install.sh: waiting up to $wait s for the lock on $STATE_DIR, held by install.sh pid ${holder:-unknown}" >&2
        flock -w "$wait" 9 ||
            fail "another install.sh (pid ${holder:-unknown}) holds the lock on $STATE_DIR; gave up after $wait s (KILN_LOCK_WAIT)"
    fi
    holder=$(cat "$STATE_DIR/lock.pid" 2>/dev/null || :)
    if [ -n "$holder" ]; then
        echo "install.sh: install.sh pid $holder ended without releasing the lock on $STATE_DIR (killed?): taking it over" >&2
    fi
    echo $$ >"$STATE_DIR/lock.pid"
    rm -rf "$STATE_DIR/lock"     # the lock folder of an install.sh before flock
    rm -f "$STATE_DIR"/*.new     # half-written state files of a killed run
    check_generation             # a run that held the lock may have installed a newer one
}
check_generation() { # rollback protection: never an older generation unless told to
    old=$(kv "$STATE_DIR/state" KILN_GENERATION 2>/dev/null || :)
    if [ -n "$old" ] && [ "$GENERATION" -lt "$old" ] && [ "${KILN_ALLOW_DOWNGRADE:-0}" != 1 ]; then
        fail "generation $GENERATION is older than the installed generation $old (set KILN_ALLOW_DOWNGRADE=1 to roll back)"
    fi
}
LACK='' # "tool (what needs it)" of each missing tool, for preflight
need() { # $1 = what needs them, then tools that must all be on PATH
    why=$1 && shift
    for t in "$@"; do command -v "$t" >/dev/null 2>&1 || LACK="${LACK:+$LACK, }$t ($why)"; done
}
# `<free KiB> <mount point>` of the file system the nearest existing folder of $1 is on.
fs_of() {
    set -- "$1"
    while [ ! -d "$1" ]; do set -- "${1%/*}" && set -- "${1:-/}"; done
    df -Pk "$1/" | awk 'NR == 2 { print $4, $6 }'
}

# 1. Digests before anything else: the seed pins secrets.tar.gz, whose BUNDLES pins
# every role bundle, so a bundle of another build (mix-and-match) cannot pass.
step_verify() {
    if [ -z "$DIR" ] || [ ! -d "$DIR" ]; then fail "usage: --dir DIR (a folder) is required"; fi
    is_sha "$SECRETS_SHA" || fail "usage: --secrets-sha256 must be 64 lowercase hex digits"
    SECRETS=$DIR/secrets.tar.gz
    [ -f "$SECRETS" ] || fail "missing $SECRETS"
    got=$(sha_of "$SECRETS")
    [ "$got" = "$SECRETS_SHA" ] || fail "secrets.tar.gz has sha256 $got, expected $SECRETS_SHA"
    # Read HOST and BUNDLES to stdout: nothing of the archive is written yet.
    tar -xzOf "$SECRETS" HOST >"$WORK/HOST" 2>/dev/null || fail "secrets.tar.gz has no HOST"
    tar -xzOf "$SECRETS" BUNDLES >"$WORK/BUNDLES" 2>/dev/null || fail "secrets.tar.gz has no BUNDLES"
    verify_signature
    HOST=$(kv "$WORK/HOST" KILN_HOST) BUILD_ID=$(kv "$WORK/HOST" KILN_BUILD_ID)
    GENERATION=$(kv "$WORK/HOST" KILN_GENERATION)
    [ -n "$HOST" ] || fail "HOST has no KILN_HOST"
    is_sha "$BUILD_ID" || fail "HOST has no valid KILN_BUILD_ID"
    printf '%s\n' "$GENERATION" | grep -Eqx '[0-9]{1,9}' || fail "HOST has no valid KILN_GENERATION"
    me=${KILN_EXPECT_HOST:-$(uname -n)}
    [ "$HOST" = "$me" ] || [ "$HOST" = "${me%%.*}" ] ||
        fail "secrets are for host $HOST, this host is $me"

    : >"$WORK/archives" # lines: <index> <bundle|secrets> <sha256> <file>
    dup=$(awk '{ print $2 }' "$WORK/BUNDLES" | sort | uniq -d | head -n 1)
    [ -z "$dup" ] || fail "BUNDLES names $dup twice"
    n=0
    while read -r sha name extra; do
        case $sha in '' | '#'*) continue ;; esac
        { is_sha "$sha" && [ -z "$extra" ] && printf '%s\n' "$name" | grep -Eqx '[A-Za-z0-9][A-Za-z0-9._-]*\.tar\.gz'; } ||
            fail "BUNDLES: bad line: $sha $name $extra"
        locate_bundle "$sha" "$name" && f=$FOUND
        n=$((n + 1))
        echo "$n bundle $sha $f" >>"$WORK/archives"
    done <"$WORK/BUNDLES"
    [ "$n" -gt 0 ] || fail "BUNDLES lists no bundle"
    echo "$((n + 1)) secrets $SECRETS_SHA $SECRETS" >>"$WORK/archives"

    check_generation
    ok "host=$HOST build=$BUILD_ID generation=$GENERATION bundles=$n${FETCHED:+ fetched=${FETCHED%,}}${DELTAS:+ deltas=${DELTAS%,}}"
}

# Signed builds: HOST then BUNDLES must be signed (BUNDLES.sig, DER ECDSA-SHA256 in the
# secrets archive) by the cluster's public key, checked by openssl before either is used: the
# key the seed's write_files placed at $R/etc/kiln/signing.pub (runs by hand check too), or
# --signing-key. The signed text holds the build id and generation,
# so an older generation cannot pass as a newer one. No key: nothing is expected. A kept
# generation (a rollback) was checked when it first converged, perhaps under a key since rotated.
SIGNING_KEY=''
verify_signature() {
    key=${SIGNING_KEY:-$R/etc/kiln/signing.pub}
    if [ -z "$SIGNING_KEY" ] && [ ! -f "$key" ]; then return 0; fi
    case $DIR in "$KEPT"/*) return 0 ;; esac
    [ -f "$key" ] || fail "signing key $key does not exist (the seed's write_files places it)"
    need 'signed builds' openssl
    if [ -n "$LACK" ]; then STEP=preflight && fail "missing tools: $LACK"; fi
    { tar -xzOf "$SECRETS" BUNDLES.sig >"$WORK/BUNDLES.sig" 2>/dev/null && [ -s "$WORK/BUNDLES.sig" ]; } ||
        fail "signature missing: secrets.tar.gz has no BUNDLES.sig, but this host takes only builds signed by $key (an unsigned build, or one by an older kiln)"
    # One split only: HOST holds only KILN_ lines, BUNDLES only bundle and delta lines (no line
    # can move).
    bad=$(grep -nvx 'KILN_[A-Z0-9_]*=.*' "$WORK/HOST" | head -n 1 | cut -d : -f 1)
    [ -z "$bad" ] || fail "signature: HOST line $bad is not KILN_<KEY>=<value>"
    bad=$(grep -nvxE -e '[0-9a-f]{64} [A-Za-z0-9][A-Za-z0-9._-]*' \
        -e '#delta [0-9a-f]{64} [0-9a-f]{64} [A-Za-z0-9][A-Za-z0-9._-]* [0-9a-f]{64}' \
        "$WORK/BUNDLES" | head -n 1 | cut -d : -f 1)
    [ -z "$bad" ] || fail "signature: BUNDLES line $bad is not <sha256> <file> (or a #delta line)"
    cat "$WORK/HOST" "$WORK/BUNDLES" >"$WORK/signed"
    openssl dgst -sha256 -verify "$key" -signature "$WORK/BUNDLES.sig" "$WORK/signed" >"$WORK/err" 2>&1 ||
        fail "signature of HOST and BUNDLES does not verify with $key (signed by another key: another cluster's build, or altered and signed again): $(head -n 1 "$WORK/err")"
    echo "install.sh: HOST and BUNDLES signed by $key" >&2
}

# A bundle that is not in DIR, from the first source that has it with the pinned digest.
FETCHED='' # "<file>@<source>," of each file fetched in this run, for verify's marker
fetch_bundle() { # $1 sha256, $2 file name
    fetch_file "$1" "bundles/$2" "$1.tar.gz" bundle
}
# A file of an out folder, by its digest: sets FOUND (its path in DOWNLOADS), or WHY (what each
# source answered) and returns 1. A seed without install.sh runs this function (and those it
# calls) on its own to take install.sh from the sources: keep them free of other state.
# $5, when given, is the name the log shows instead of the path's (a path that is a secret token).
fetch_file() { # $1 sha256, $2 its path in an out folder, $3 its name in DOWNLOADS, $4 what it is, [$5]
    FOUND=$DOWNLOADS/$3 WHY='' shown=${5:-${2##*/}}
    if [ -f "$FOUND" ] && [ "$(sha_of "$FOUND")" = "$1" ]; then return 0; fi
    if [ -z "$SOURCES" ]; then
        WHY="missing $4 $DIR/$shown (no --source to fetch it from)" && return 1
    fi
    mkparents "$FOUND"
    part=$DOWNLOADS/.$1.$$.part # per run: two install.sh must not write one file
    for src in $SOURCES; do
        rm -f "$part"
        if get_from "$src" "$1" "$2" "$part" </dev/null; then
            got=$(sha_of "$part")
            if [ "$got" = "$1" ]; then
                mv -f "$part" "$FOUND"
                echo "install.sh: $shown fetched from $src" >&2
                FETCHED="$FETCHED$shown@$src,"
                return 0
            fi
            why="has sha256 $got, not the pinned one"
        else
            why=$(last_line "$WORK/err")
        fi
        WHY="${WHY:+$WHY; }$src: ${why:-failed}"
    done
    rm -f "$part"
    WHY="$4 $shown ($1) is not in $DIR and no source has it: $WHY"
    return 1
}
get_from() { # $1 source, $2 sha256, $3 path in an out folder, $4 output; errors in $WORK/err
    : >"$WORK/err"
    case $1 in
    medium) medium_mounted && cp "$MEDIUM/$3" "$4" 2>"$WORK/err" ;;
    http://* | https://*) http_get "$1/$3" "$4" ;;
    oci://*) oci_blob "https://${1#oci://}" "$2" "$4" ;;
    oci+http://*) oci_blob "http://${1#oci+http://}" "$2" "$4" ;;
    *) echo "unknown source (expected medium, http(s)://, oci:// or oci+http://)" >"$WORK/err" && return 1 ;;
    esac
}
medium_mounted() { # the shared bundle medium, mounted read-only once: sets MEDIUM
    MEDIUM=${KILN_BUNDLE_MEDIUM:-/run/kiln/bundle-medium}
    # Given, mounted by an earlier run, or bound in (a container): nothing to mount.
    if [ -n "${KILN_BUNDLE_MEDIUM:-}" ] || [ -d "$MEDIUM/bundles" ]; then return 0; fi
    if ! { mkdir -p "$MEDIUM" && { mount -o ro LABEL=KILNBUNDLE "$MEDIUM" 2>"$WORK/err" ||
        mount -o ro /dev/disk/by-label/KILNBUNDLE "$MEDIUM" 2>"$WORK/err"; }; }; then
        echo "no medium labelled KILNBUNDLE could be mounted: $(last_line "$WORK/err")" >"$WORK/err" && return 1
    fi
}
http_client() { # curl, else wget (KILN_HTTP_CLIENT chooses)
    if [ -n "${KILN_HTTP_CLIENT:-}" ]; then echo "$KILN_HTTP_CLIENT"
    elif command -v curl >/dev/null 2>&1; then echo curl
    elif command -v wget >/dev/null 2>&1; then echo wget
    else echo none; fi
}
# GET $1 into $2 with an optional header $3; response headers in $WORK/headers; an error line
# in $WORK/err. A server that sends nothing for 30 s fails the try (curl; GNU wget).
http_get() {
    : >"$WORK/headers"
    set -- "$1" "$2" "${3:-X-Kiln: install.sh}"
    case $(http_client) in
    curl)
        curl -fsSL --connect-timeout 10 --speed-limit 1 --speed-time 30 -H "$3" \
            -D "$WORK/headers" -o "$2" "$1" 2>"$WORK/err" ;;
    wget)
        # GNU wget: bounded and terse; busybox's has neither option (nor shows a 401's headers).
        gnu='' && if wget --version 2>/dev/null | grep -q GNU; then gnu='-nv --timeout=30 --tries=2'; fi
        # shellcheck disable=SC2086 # $gnu is options, one word each
        wget -S $gnu --header "$3" -O "$2" "$1" 2>"$WORK/wget" && return 0
        # Response headers are indented lines in wget's log; its own message is the last line.
        sed -n 's/^  *//p' "$WORK/wget" | tr -d '\r' >"$WORK/headers"
        { grep -E '^HTTP/' "$WORK/headers" | tail -n 1 | grep . || last_line "$WORK/wget"; } >"$WORK/err"
        return 1 ;;
    *) echo "neither curl nor wget is installed" >"$WORK/err" && return 1 ;;
    esac
}
# The blob $2 of the repository in $1 (<scheme>://host[:port]/<repo>) into $3. A registry
# that answers 401 with a Bearer challenge (Harbor, Docker Hub-style) gets an anonymous
# pull token from its realm first.
oci_blob() {
    scheme=${1%%://*} rest=${1#*://}
    url=$scheme://${rest%%/*}/v2/${rest#*/}/blobs/sha256:$2
    http_get "$url" "$3" && return 0
    challenge=$(tr -d '\r' <"$WORK/headers" | sed -n 's/^[Ww][Ww][Ww]-[Aa]uthenticate: *Bearer  *//p' | tail -n 1)
    [ -n "$challenge" ] || return 1
    realm=$(challenge_param realm) service=$(challenge_param service)
    [ -n "$realm" ] || { echo "401 with a Bearer challenge that names no realm" >"$WORK/err" && return 1; }
    http_get "$realm?service=$service&scope=repository:${rest#*/}:pull" "$WORK/token" ||
        { echo "token from $realm: $(last_line "$WORK/err")" >"$WORK/err" && return 1; }
    token=$(tr -d '\n' <"$WORK/token" | sed -nE 's/.*"(token|access_token)"[[:space:]]*:[[:space:]]*"([^"]*)".*/\2/p')
    [ -n "$token" ] || { echo "the token service at $realm sent no token" >"$WORK/err" && return 1; }
    http_get "$url" "$3" "Authorization: Bearer $token"
}
challenge_param() { # $1="…" of the Bearer challenge in $challenge
    printf '%s\n' "$challenge" | tr ',' '\n' | sed -n "s/^ *$1=\"\(.*\)\"\$/\1/p" | head -n 1
}

# Delta bundles (`kiln build --delta-from`). BUNDLES may follow a bundle's line with
# `#delta <bundle sha256> <delta sha256> <delta file> <base sha256>` (a comment to an older
# install.sh). A bundle comes from DIR, else from a download, else from its delta when this
# host holds the base (in DIR, in the kept copy of the generation it runs, or downloaded),
# else from a source. An unchanged bundle is taken from the kept copy too. $WORK/deltas has a
# line `<bundle sha256> <base file> <base name>` for each delta used.
DELTAS='' # "<bundle>:<delta|refused>," for verify's marker
locate_bundle() { # $1 sha256, $2 file name: sets FOUND (the bundle, or the delta rebuilding it)
    FOUND=$DIR/$2
    if [ -f "$FOUND" ]; then
        got=$(sha_of "$FOUND")
        [ "$got" = "$1" ] || fail "$2 has sha256 $got, but this host's BUNDLES pins $1 (bundle from another build?)"
        return 0
    fi
    ran=$(kv "$STATE_DIR/state" KILN_BUILD_ID 2>/dev/null || :)
    for FOUND in "$DOWNLOADS/$1.tar.gz" "$KEPT/${ran:-none}/$2"; do
        if [ -f "$FOUND" ] && [ "$(sha_of "$FOUND")" = "$1" ]; then return 0; fi
    done
    DELTA_WHY=''
    if grep -q "^#delta $1 " "$WORK/BUNDLES"; then
        # shellcheck disable=SC2046 # the delta line's fields, one word each (checked in use_delta)
        if use_delta "$1" "$2" $(awk -v s="$1" '$1 == "#delta" && $2 == s { print $3, $4, $5; exit }' "$WORK/BUNDLES"); then
            DELTAS="$DELTAS$2:delta,"
            return 0
        fi
        echo "install.sh: $DELTA_WHY; trying the full bundle $2" >&2
        DELTAS="$DELTAS$2:refused,"
    fi
    fetch_bundle "$1" "$2" && return 0
    fail "${DELTA_WHY:+$DELTA_WHY; and }$WHY"
}
use_delta() { # $1 bundle sha256, $2 its file, $3 delta sha256, $4 delta file, $5 base sha256
    { is_sha "${3:-}" && is_sha "${5:-}" && printf '%s\n' "${4:-}" | grep -Eqx '[A-Za-z0-9][A-Za-z0-9._-]*\.tar\.gz'; } ||
        fail "BUNDLES: bad line: #delta $1 ${3:-} ${4:-} ${5:-}"
    id=${2%-*} base_name=${2%-*}-$(printf '%.16s' "$5").tar.gz installed=''
    ran=$(kv "$STATE_DIR/state" KILN_BUILD_ID 2>/dev/null || :)
    base=''
    for c in "$DIR/$base_name" "$KEPT/${ran:-none}/$base_name" "$DOWNLOADS/$5.tar.gz"; do
        if [ -f "$c" ] && [ "$(sha_of "$c")" = "$5" ]; then base=$c && break; fi
    done
    if [ -z "$base" ]; then
        # What the host runs: the installed generation's bundle of this id, from its kept BUNDLES.
        [ -z "$ran" ] || installed=$(tar -xzOf "$KEPT/$ran/secrets.tar.gz" BUNDLES 2>/dev/null |
            awk -v id="$id" 'substr($2, 1, length(id) + 1) == id "-" && $2 !~ /-delta-/ { print $1; exit }')
        DELTA_WHY="delta $4 of $2 is for base sha256 $5, this host has ${installed:-none}"
        [ "$installed" != "$5" ] || DELTA_WHY="$DELTA_WHY but keeps no copy of it"
        return 1
    fi
    if [ -f "$DIR/$4" ] && [ "$(sha_of "$DIR/$4")" = "$3" ]; then
        FOUND=$DIR/$4
    elif fetch_bundle "$3" "$4"; then :; else
        DELTA_WHY="delta $4 of $2: $WHY" && return 1
    fi
    # The delta names its base and its bundle too: both must be those BUNDLES pins.
    tar -xzOf "$FOUND" DELTA >"$WORK/DELTA" 2>/dev/null || { DELTA_WHY="delta $4 has no DELTA" && return 1; }
    for k in KILN_DELTA_BASE_SHA256 KILN_DELTA_FOR_SHA256; do
        if [ $k = KILN_DELTA_BASE_SHA256 ]; then want=$5; else want=$1; fi
        [ "$(kv "$WORK/DELTA" $k)" = "$want" ] ||
            { DELTA_WHY="delta $4 names $k=$(kv "$WORK/DELTA" $k), BUNDLES pins $want" && return 1; }
    done
    echo "$1 $base $base_name" >>"$WORK/deltas"
}
delta_base() { # the base file of the delta rebuilding bundle $1, if one is used
    [ -f "$WORK/deltas" ] && awk -v s="$1" '$1 == s { print $2; exit }' "$WORK/deltas"
}
delta_listing() { # $1 sha256, $2 archive, $3 its listing: a delta's becomes the bundle's, from NEW-MANIFEST
    [ -n "$(delta_base "$1")" ] || return 0
    { tar -xzOf "$2" NEW-MANIFEST 2>/dev/null || fail "${2##*/}: a delta without NEW-MANIFEST"; } |
        awk '{ print "-rw-r--r-- root/root " $3 " 1970-01-01 00:00 " $4 } END { print "-rw-r--r-- root/root 0 1970-01-01 00:00 MANIFEST" }' >"$3"
}
member_of() { # $1 sha256, $2 archive, $3 member: its content, from a delta's tree/ or its base
    base=$(delta_base "$1")
    if [ -z "$base" ]; then tar -xzOf "$2" --occurrence "$3" && return; fi
    tar -xzOf "$2" --occurrence "tree/$3" 2>/dev/null || tar -xzOf "$base" --occurrence "$3"
}
stage_delta() { # $1 sha256, $2 delta, $3 empty staging folder: the base, less REMOVED, plus tree/
    base=$(delta_base "$1") n=${2##*/}
    tar -xzf "$base" -C "$3" --no-same-owner --no-same-permissions 2>"$WORK/err" ||
        { WHY="$n: cannot extract its base ${base##*/}: $(head -n 1 "$WORK/err")" && return 1; }
    tar -xzOf "$2" REMOVED >"$WORK/removed" 2>"$WORK/err" || { WHY="$n: no REMOVED" && return 1; }
    bad=$(grep -Evx '[A-Za-z0-9._+@:,=%~/-]+' "$WORK/removed" | head -n 1)
    [ -n "$bad" ] || bad=$(grep -E '(^|/)\.{0,2}(/|$)' "$WORK/removed" | head -n 1)
    [ -z "$bad" ] || { WHY="$n: REMOVED names $bad" && return 1; }
    while read -r p; do rm -f "$3/$p"; done <"$WORK/removed"
    if tar -tzf "$2" | grep -q '^tree/'; then
        tar -xzf "$2" -C "$3" --strip-components=1 --no-same-owner --no-same-permissions tree 2>"$WORK/err" ||
            { WHY="$n: cannot write into $3: $(head -n 1 "$WORK/err")" && return 1; }
    fi
    # The bundle's MANIFEST: step 5 checks every file of the rebuilt tree against it.
    tar -xzOf "$2" NEW-MANIFEST >"$3/MANIFEST" 2>"$WORK/err" || { WHY="$n: cannot write $3/MANIFEST: $(head -n 1 "$WORK/err")" && return 1; }
}
kept_name() { # $1 sha256, $2 archive: the name it is kept under (BUNDLES' name, a delta's own)
    if [ -n "$(delta_base "$1")" ]; then
        awk -v s="$1" '$1 == "#delta" && $2 == s { print $4; exit }' "$WORK/BUNDLES"
    else
        awk -v s="$1" '$1 == s { print $2; exit }' "$WORK/BUNDLES"
    fi
}
keep_delta_bases() { # $1 a kept generation: the bases of its deltas beside them (for a rollback)
    [ -f "$WORK/deltas" ] || return 0
    while read -r sha base n; do
        ln -f "$base" "$1/$n" 2>/dev/null || cp "$base" "$1/$n" 2>/dev/null ||
            echo "install.sh: cannot keep $n beside generation $GENERATION: a rollback to it needs the full bundles" >&2
    done <"$WORK/deltas"
}

# 2. Refuse hostile archives from their listing alone, before anything is extracted:
# only regular files with plain relative names, each once.
step_list() {
    entries=0
    while read -r i kind sha f; do
        tar -tPzvf "$f" >"$WORK/list.$i" 2>"$WORK/err" || fail "${f##*/}: unreadable tar.gz: $(last_line "$WORK/err")"
        # GNU tar -v: "<mode> <owner> <size> <date> <time> <name>"; links, devices and
        # names with whitespace never have exactly 6 fields; escaped names show a '\'.
        bad=$(awk '
            NF != 6 || substr($1, 1, 1) != "-" { print "not a regular file: " $0; exit }
            $6 ~ /^\// { print "absolute path: " $6; exit }
            $6 ~ /(^|\/)\.\.(\/|$)/ { print "`..` component: " $6; exit }
            $6 ~ /(^|\/)\.?(\/|$)/ { print "empty or `.` component: " $6; exit }
            $6 ~ /[^A-Za-z0-9._+@:,=%~\/-]/ { print "unexpected character in name: " $6; exit }
        ' "$WORK/list.$i")
        [ -z "$bad" ] || fail "${f##*/}: $bad"
        dup=$(awk '{ print $6 }' "$WORK/list.$i" | sort | uniq -d | head -n 1)
        [ -z "$dup" ] || fail "${f##*/}: duplicate entry $dup"
        delta_listing "$sha" "$f" "$WORK/list.$i"
        entries=$((entries + $(wc -l <"$WORK/list.$i")))
        if [ "$kind" = bundle ]; then cat "$WORK/list.$i" >>"$WORK/blist"; fi
    done <"$WORK/archives"
    # Sizes for preflight: files to install, image tarballs to import, archives to stage.
    ROOTFS_BYTES=$(cat "$WORK"/list.* | awk '$6 ~ /^rootfs\// { s += $3 } END { printf "%.0f", s }')
    IMAGE_BYTES=$(cat "$WORK"/list.* | awk '$6 ~ /^images\// { s += $3 } END { printf "%.0f", s }')
    STAGE_BYTES=0
    while read -r i kind sha f; do
        [ -d "$STAGING/$sha" ] || STAGE_BYTES=$(awk -v s="$STAGE_BYTES" '{ s += $3 } END { printf "%.0f", s }' "$WORK/list.$i")
    done <"$WORK/archives"
    ok "archives=$(wc -l <"$WORK/archives") entries=$entries"
}

# 3. Refuse a host the bundles cannot work on, from the listings and HOST alone: nothing is
# written yet (a wrong clock or a missing tool must not leave half a staging behind).
step_preflight() {
    case $(uname -m) in x86_64) arch=amd64 ;; aarch64 | arm64) arch=arm64 ;; *) arch=$(uname -m) ;; esac
    want=$(kv "$WORK/HOST" KILN_ARCH)
    [ "$arch" = "$want" ] || fail "machine is $arch, bundles are for $want"
    osr=$R/etc/os-release
    [ -f "$osr" ] || osr=$R/usr/lib/os-release
    [ -f "$osr" ] || fail "no $R/etc/os-release"
    id=$(kv "$osr" ID) like=$(kv "$osr" ID_LIKE) ver=$(kv "$osr" VERSION_ID)
    case " $id $like " in
    *" debian "* | *" ubuntu "*) family=debian ;;
    *" rhel "* | *" centos "* | *" fedora "* | *" rocky "*) family=el ;;
    *) family=$id ;;
    esac
    case $id in ubuntu) os=$id$(echo "$ver" | tr -d .) ;; *) os=$id${ver%%.*} ;; esac
    want=$(kv "$WORK/HOST" KILN_OS_FAMILY)
    [ "$family" = "$want" ] || fail "OS family is $family ($id $ver), bundles are for $want"
    note=
    [ "$os" = "$(kv "$WORK/HOST" KILN_OS)" ] || note=" (bundles built for $(kv "$WORK/HOST" KILN_OS))"
    # The tools this host's roles need, all named at once (the base ones were checked at start).
    has() { awk -v re="$1" '$6 ~ re && $3 > 0 { f = 1 } END { exit !f }' "$WORK/blist"; }
    if has '^packages/'; then
        if [ "$family" = el ]; then need packages rpm; else need packages dpkg dpkg-deb dpkg-query; fi
    fi
    # The runtime may come with the bundles (a file, or a package: step 9 names it if not).
    if has '^images/' && ! command -v ctr >/dev/null 2>&1 && ! command -v docker >/dev/null 2>&1 &&
        ! has '^(packages/|rootfs/(usr/)?(local/)?s?bin/(ctr|docker)$)'; then
        LACK="${LACK:+$LACK, }ctr or docker (images)"
    fi
    if has '^UNITS$' && use_systemctl; then need units systemctl; fi
    if has '^HEALTH$'; then need 'health check' timeout; fi
    if live && ! in_container; then # containers tolerate these failing (step 6)
        if has '^rootfs/(etc|usr/lib)/modules-load\.d/[^/]*\.conf$'; then need 'kernel modules' modprobe; fi
        if has '^rootfs/(etc|usr/lib)/sysctl\.d/[^/]*\.conf$'; then need sysctl sysctl; fi
        if [ "$(wc -l </proc/swaps)" -gt 1 ]; then need swap swapoff; fi
    fi
    [ -z "$LACK" ] || fail "missing tools: $LACK"
    # The certificates are only valid between notBefore and notAfter (epoch seconds in HOST).
    now=$(date +%s)
    nb=$(kv "$WORK/HOST" KILN_NOT_BEFORE) na=$(kv "$WORK/HOST" KILN_NOT_AFTER)
    if [ -n "$nb" ] && [ "$now" -lt "$nb" ]; then
        fail "the clock says $(utc "$now"), before the certificates' notBefore $(utc "$nb"): set the clock (chrony, hwclock) and rerun"
    fi
    if [ -n "$na" ] && [ "$now" -gt "$na" ]; then
        fail "the clock says $(utc "$now"), after the certificates' notAfter $(utc "$na"): the certificates expired or the clock is wrong"
    fi
    # Room for staging, the files and twice the images (tarball plus unpacked layers), + 64 MiB
    # where the files go; staging may be elsewhere (KILN_STATE_DIR, its own mount).
    need=$(((ROOTFS_BYTES + 2 * IMAGE_BYTES) / 1024 + 65536)) stage=$((STAGE_BYTES / 1024 + 1))
    fs_of "$R/" >"$WORK/fs" && read -r free mnt <"$WORK/fs"
    fs_of "$STAGING" >"$WORK/fs" && read -r sfree smnt <"$WORK/fs"
    if [ "$smnt" = "$mnt" ]; then
        need=$((need + stage))
    elif [ "$sfree" -lt "$stage" ]; then
        fail "only $sfree KiB free on $smnt (for $STAGING), need $stage KiB"
    fi
    [ "$free" -ge "$need" ] || fail "only $free KiB free on $mnt (for $R/), need $need KiB"
    ROOM_KIB=$need # what a rerun of this generation needs: a copy kept for rollback leaves it
    # The host's planned address must be up: its certificates, peers and the VIP name it, and
    # a host whose network did not come up would otherwise install and report healthy alone.
    addr=$(kv "$WORK/HOST" KILN_IP)
    if live && [ -n "$addr" ] && command -v ip >/dev/null; then
        ip -o addr show 2>/dev/null | awk -v a="$addr" '{ split($4, p, "/"); if (p[1] == a) f = 1 } END { exit !f }' ||
            fail "address $addr (the plan's for $HOST) is on no interface: the network is not configured (check cloud-init's network-config and networking.service)"
    fi
    # Roles that declare KILN_NEEDS_DEFAULT_ROUTE=1 in BUNDLE (kubelet picks its node IP from
    # it); BUNDLE is read from the archive (--occurrence: tar stops once it has it).
    while read -r i kind sha f; do
        [ "$kind" = bundle ] || continue
        member_of "$sha" "$f" BUNDLE >"$WORK/BUNDLE" 2>/dev/null || fail "${f##*/}: no BUNDLE"
        if [ "$(kv "$WORK/BUNDLE" KILN_NEEDS_DEFAULT_ROUTE)" = 1 ]; then
            awk 'NR > 1 && $2 == "00000000" { found = 1 } END { exit !found }' /proc/net/route 2>/dev/null ||
                grep -q '^0\{32\} 00 ' /proc/net/ipv6_route 2>/dev/null ||
                fail "no default route, role $(kv "$WORK/BUNDLE" KILN_ROLE) needs one"
        fi
    done <"$WORK/archives"
    ok "arch=$arch os=$os$note family=$family free_kib=$free"
}
utc() { # epoch seconds $1 as an ISO 8601 UTC date (GNU and busybox date), and the number
    echo "$(date -u -d "@$1" +%Y-%m-%dT%H:%M:%SZ 2>/dev/null || echo '?') ($1)"
}

# 4. Unpack each archive into staging/<its sha256>; a folder is renamed into place only
# when complete, so an existing one is reused (and rechecked by step 4).
step_extract() {
    lock
    staged=0 reused=0
    : >"$WORK/staged"
    while read -r i kind sha f; do
        if [ -d "$STAGING/$sha" ]; then reused=$((reused + 1)) && continue; fi
        part=$STAGING/$sha.part
        rm -rf "$part"
        mkdir "$part" 2>"$WORK/err" || unstage_fail "cannot create $part: $(last_line "$WORK/err")"
        if [ -n "$(delta_base "$sha")" ]; then
            stage_delta "$sha" "$f" "$part" || unstage_fail "$WHY"
        elif ! tar -xzf "$f" -C "$part" --no-same-owner --no-same-permissions 2>"$WORK/err"; then
            # GNU tar goes on after a failed write and ends with a summary: name the first failure.
            why=$(sed -n -e 's/^tar: \([^ ]*\): Cannot [a-z]*: \(.*\)$/\1: \2/p' \
                -e 's/^tar: \([^ ]*\): \(Wrote only .*\)$/\1: \2/p' "$WORK/err" | head -n 1)
            [ -z "$why" ] || unstage_fail "${f##*/}: cannot write $part/$why"
            unstage_fail "${f##*/}: extraction failed: $(head -n 1 "$WORK/err")"
        fi
        mv "$part" "$STAGING/$sha"
        echo "$STAGING/$sha" >>"$WORK/staged"
        staged=$((staged + 1))
    done <"$WORK/archives"
    ok "staged=$staged reused=$reused dir=$STAGING"
}
unstage_fail() { # a failed extraction leaves staging as it was (a full disk gets its space back)
    rm -rf "$part"
    while read -r d; do rm -rf "$d"; done <"$WORK/staged"
    fail "$1"
}

# 5. Every staged file against its archive's MANIFEST (<sha256> <mode> <size> <path>): same
# set of files, same digests.
step_manifest() {
    : >"$WORK/all" # lines: <sha256> <mode> <path> <archive index>
    : >"$WORK/units"
    ROLES=
    while read -r i kind sha f; do
        d=$STAGING/$sha n=${f##*/}
        [ -f "$d/MANIFEST" ] || fail "$n: no MANIFEST"
        bad=$(grep -Evn '^[0-9a-f]{64} 0(644|755|600|640|700|750) (0|[1-9][0-9]*) [^ ]+$' "$d/MANIFEST" | head -n 1)
        [ -z "$bad" ] || fail "$n: bad MANIFEST line $bad"
        { echo MANIFEST && awk '{ print $4 }' "$d/MANIFEST"; } | sort >"$WORK/want"
        (cd "$d" && find . ! -type d) | sed 's|^\./||' | sort >"$WORK/have"
        missing=$(comm -23 "$WORK/want" "$WORK/have" | head -n 1)
        extra=$(comm -13 "$WORK/want" "$WORK/have" | head -n 1)
        [ -z "$missing" ] || fail "$n: $missing is in MANIFEST but not in the archive"
        [ -z "$extra" ] || fail "$n: $extra is in the archive but not in MANIFEST"
        [ -z "$(cd "$d" && find . ! -type d ! -type f)" ] || fail "$n: staging holds a non-regular file"
        awk '{ print $1 "  " $4 }' "$d/MANIFEST" >"$WORK/sums"
        (cd "$d" && sha256sum -c "$WORK/sums") >"$WORK/out" 2>&1 ||
            fail "$n: digest mismatch: $(grep -v ': OK$' "$WORK/out" | head -n 1)"
        if [ "$kind" = bundle ]; then
            for m in BUNDLE UNITS IMAGES PACKAGES HEALTH; do
                grep -q " $m\$" "$d/MANIFEST" || fail "$n: no $m"
            done
            role=$(kv "$d/BUNDLE" KILN_ROLE)
            printf '%s\n' "$role" | grep -Eqx '[a-z0-9][a-z0-9-]*' || fail "$n: BUNDLE has no valid KILN_ROLE"
            for k in KILN_OS KILN_OS_FAMILY KILN_ARCH; do
                [ "$(kv "$d/BUNDLE" $k)" = "$(kv "$WORK/HOST" $k)" ] ||
                    fail "$n: $k=$(kv "$d/BUNDLE" $k) but this host's HOST says $k=$(kv "$WORK/HOST" $k)"
            done
            for p in $(lines "$d/IMAGES") $(lines "$d/PACKAGES"); do
                awk '{ print $4 }' "$d/MANIFEST" | grep -qxF -e "$p" || fail "$n: $p is not in MANIFEST"
            done
            for u in $(lines "$d/UNITS"); do
                printf '%s\n' "$u" | grep -Eqx '[A-Za-z0-9@._:-]+' || fail "$n: bad unit name $u"
                grep -qx "$u" "$WORK/units" || echo "$u" >>"$WORK/units"
            done
            ROLES=${ROLES:+$ROLES,}$role
        else
            for m in HOST BUNDLES; do grep -q " $m\$" "$d/MANIFEST" || fail "$n: no $m"; done
        fi
        sed -n "s|^\\([0-9a-f]*\\) \\([0-7]*\\) [0-9]* rootfs/\\(.*\\)\$|\\1 \\2 \\3 $i|p" "$d/MANIFEST" >>"$WORK/all"
    done <"$WORK/archives"
    # The same path from two archives: the later one wins (secrets last: host scope),
    # so every run installs the same bytes.
    awk '{ last[$3] = $0 } END { for (p in last) print last[p] }' "$WORK/all" | sort -k 3 >"$WORK/plan"
    ok "files=$(wc -l <"$WORK/plan") roles=$ROLES"
}

staged_of() { # staged path of plan entry $2 (a rootfs path) from archive index $1
    echo "$STAGING/$(awk -v i="$1" '$1 == i { print $3 }' "$WORK/archives")/rootfs/$2"
}
plan_files() { # staged copies of the plan's files matching the regex $1, in path order
    awk -v re="$1" '$3 ~ re { print $4, $3 }' "$WORK/plan" | while read -r i p; do staged_of "$i" "$p"; done
}
edit_file() { # rewrites $1 through the sed script $2, atomically, only if that changes it
    [ -f "$1" ] || return 0
    sed "$2" "$1" >"$1.kiln-new"
    if [ "$(sha_of "$1.kiln-new")" = "$(sha_of "$1")" ]; then rm -f "$1.kiln-new" && return 0; fi
    chmod 0644 "$1.kiln-new" && replace_file "$1.kiln-new" "$1"
    CHANGED=$((CHANGED + 1))
}

# 6. Kernel and host settings the roles need, from the staged files (they are
# installed in step 8): modules first (net.bridge.* needs br_netfilter), then sysctl.
# Containers cannot load modules or set most sysctls: noted, not fatal.
step_prep() {
    notes=
    tolerate() { # $1 = what failed; fatal on a real machine only
        if in_container; then notes="$notes $1-failed-in-container"; else fail "$1 failed: $(last_line "$WORK/err")"; fi
    }
    mods=0 sysctls=0
    if live; then
        for m in $(plan_files '^(etc|usr/lib)/modules-load\.d/[^/]*\.conf$' | xargs -r cat | sed 's/[#;].*//'); do
            mods=$((mods + 1))
            modprobe "$m" 2>"$WORK/err" || tolerate "modprobe-$m"
        done
        for f in $(plan_files '^(etc|usr/lib)/sysctl\.d/[^/]*\.conf$'); do
            sysctls=$((sysctls + 1))
            sysctl -q -p "$f" >/dev/null 2>"$WORK/err" || tolerate "sysctl-${f##*/}"
        done
        if [ "$(wc -l </proc/swaps)" -gt 1 ]; then swapoff -a 2>"$WORK/err" || tolerate swapoff; fi
    else
        notes=" live-settings-skipped(KILN_ROOT)"
    fi
    # Swap stays off after a reboot: kubelet refuses to run with swap.
    edit_file "$R/etc/fstab" '/^[[:space:]]*#/b; /^[^[:space:]]*[[:space:]][[:space:]]*[^[:space:]]*[[:space:]][[:space:]]*swap[[:space:]]/s/^/#kiln-swap-off# /'
    if [ "$(kv "$WORK/HOST" KILN_OS_FAMILY)" = el ]; then
        # Kubernetes' runbooks on EL: SELinux permissive, firewalld off (kiln sets the rules).
        edit_file "$R/etc/selinux/config" 's/^SELINUX=enforcing/SELINUX=permissive/'
        if live && command -v getenforce >/dev/null && [ "$(getenforce)" = Enforcing ]; then setenforce 0; fi
        if live && use_systemctl && { [ "$(systemctl is-enabled firewalld 2>/dev/null)" = enabled ] ||
            systemctl is-active -q firewalld 2>/dev/null; }; then
            systemctl disable --now firewalld >/dev/null 2>&1 || fail "cannot disable firewalld"
            CHANGED=$((CHANGED + 1))
        fi
    fi
    ok "modules=$mods sysctl=$sysctls swap=off$notes"
}

# 7. OS packages in the order the bundles list them, skipping those already installed
# at that exact version; one dpkg/rpm call so they may depend on each other.
step_packages() {
    : >"$WORK/pkgs"
    present=0
    family=$(kv "$WORK/HOST" KILN_OS_FAMILY)
    while read -r i kind sha f; do
        [ "$kind" = bundle ] || continue
        for p in $(lines "$STAGING/$sha/PACKAGES"); do
            file=$STAGING/$sha/$p
            if [ "$family" = debian ]; then
                name=$(dpkg-deb -f "$file" Package) ver=$(dpkg-deb -f "$file" Version) ||
                    fail "dpkg-deb cannot read $p"
                if dpkg-query --admindir="$R/var/lib/dpkg" -W -f='${db:Status-Abbrev}${Version}\n' "$name" 2>/dev/null |
                    grep -qx "ii $ver"; then present=$((present + 1)) && continue; fi
            else
                q='%{EPOCH}:%{VERSION}-%{RELEASE}.%{ARCH}'
                name=$(rpm -qp --qf '%{NAME}' "$file") ver=$(rpm -qp --qf "$q" "$file") || fail "rpm cannot read $p"
                if rpm --root="$R/" -q --qf "$q\n" "$name" 2>/dev/null | grep -qx "$ver"; then
                    present=$((present + 1)) && continue
                fi
            fi
            echo "$file" >>"$WORK/pkgs"
        done
    done <"$WORK/archives"
    count=$(wc -l <"$WORK/pkgs")
    if [ "$count" -gt 0 ]; then
        if [ "$family" = debian ]; then
            export DEBIAN_FRONTEND=noninteractive
            # A run killed inside dpkg leaves packages half-configured: finish them first.
            dpkg --root="$R/" --configure -a >"$WORK/err" 2>&1 || :
            # --force-confold: keep conffiles that kiln's own files replaced.
            xargs dpkg --root="$R/" --force-confdef --force-confold -i <"$WORK/pkgs" >"$WORK/err" 2>&1 9<&- ||
                fail "dpkg -i failed: $(last_line "$WORK/err")"
        else
            xargs rpm --root="$R/" -Uvh --replacepkgs <"$WORK/pkgs" >"$WORK/err" 2>&1 9<&- ||
                fail "rpm -Uvh failed: $(last_line "$WORK/err")"
        fi
        CHANGED=$((CHANGED + count))
    fi
    ok "installed=$count present=$present"
}

# 8. Files: each one whose content or mode differs is copied next to its target, all
# are synced, then each is renamed over its target. Units to restart are recorded
# first, so a kill between the rename and step 10 still restarts them on the rerun.
step_install() {
    # Temp copies left by a killed run (perhaps of another build) must not linger.
    if [ -f "$STATE_DIR/switch" ]; then
        while read -r tmp; do rm -f "$tmp"; done <"$STATE_DIR/switch"
        rm -f "$STATE_DIR/switch"
    fi
    : >"$WORK/restart"
    : >"$WORK/changed" # lines: <path> <archive index>, of the files this run replaces
    files=0 modes=0
    while read -r sha mode path i; do
        files=$((files + 1))
        dst=$R/$path
        [ ! -d "$dst" ] || fail "$dst is a folder, the bundle has a file there"
        if [ -f "$dst" ] && [ ! -L "$dst" ] && [ "$(sha_of "$dst")" = "$sha" ]; then
            if [ "$(stat -c %a "$dst")" != "${mode#0}" ]; then
                chmod "$mode" "$dst" && modes=$((modes + 1))
            fi
            continue
        fi
        mkparents "$dst"
        tmp=${dst%/*}/.${dst##*/}.kiln-new
        echo "$tmp" >>"$STATE_DIR/switch" # recorded before it exists
        rm -f "$tmp"
        cp "$(staged_of "$i" "$path")" "$tmp" 2>"$WORK/err" || unswitch_fail "cannot write $tmp: $(sed 's/.*: //' "$WORK/err" | head -n 1)"
        chmod "$mode" "$tmp"
        echo "$path $i" >>"$WORK/changed"
    done <"$WORK/plan"
    [ ! -s "$WORK/changed" ] || restarts >>"$WORK/restart"
    if [ -s "$WORK/restart" ]; then
        cat "$STATE_DIR/pending-restart" "$WORK/restart" 2>/dev/null | sort -u >"$STATE_DIR/pending-restart.new"
        replace_file "$STATE_DIR/pending-restart.new" "$STATE_DIR/pending-restart"
    fi
    # Before any file of this run is switched in, the files list covers them too (with the
    # installed generation's): a kill between the switch and retire's new lists leaves files the
    # next run, of whichever generation, removes when it does not have them.
    awk '{ print $3 }' "$WORK/plan" | sort >"$WORK/paths"
    if [ -f "$STATE_DIR/switch" ]; then
        { cat "$WORK/paths" && { cat "$STATE_DIR/files" 2>/dev/null || :; }; } | sort -u >"$STATE_DIR/files.new"
        state_file files || :
    fi
    changed=0
    if [ -f "$STATE_DIR/switch" ]; then
        sync
        while read -r tmp; do # .<name>.kiln-new over <name>
            name=${tmp##*/} && name=${name#.}
            mv -f "$tmp" "${tmp%/*}/${name%.kiln-new}"
        done <"$STATE_DIR/switch"
        changed=$(wc -l <"$STATE_DIR/switch")
        rm -f "$STATE_DIR/switch"
    fi
    kill_point switched
    retire
    CHANGED=$((CHANGED + changed + modes + REMOVED + RETIRED_N))
    extra=''
    [ "$REMOVED" = 0 ] || extra=" removed=$REMOVED"
    ok "files=$files changed=$changed modes=$modes$extra${RETIRED:+ retired=${RETIRED%,}}"
}

# What the installed generation had and this one does not (its lists in the state folder): its
# units are stopped and disabled, then its files removed, then this generation's lists replace
# them. Reruns redo it until the new lists are written, so a kill anywhere converges.
REMOVED=0 RETIRED='' RETIRED_N=0
retire() { # $WORK/paths: this generation's files, sorted
    sort "$WORK/units" >"$WORK/units.sorted"
    if [ -f "$STATE_DIR/units" ]; then
        sort "$STATE_DIR/units" | comm -23 - "$WORK/units.sorted" >"$WORK/retired"
        while read -r u; do
            printf '%s\n' "$u" | grep -Eqx '[A-Za-z0-9@._:-]+' || fail "$STATE_DIR/units: bad unit name $u"
            if use_systemctl && command -v systemctl >/dev/null; then
                if live; then
                    systemctl disable --now "$u" >"$WORK/err" 2>&1 || ! unit_file_exists "$u" ||
                        fail "stop and disable $u (gone from this generation): $(last_line "$WORK/err")"
                else
                    systemctl --root="$R" disable "$u" >"$WORK/err" 2>&1 || ! unit_file_exists "$u" ||
                        fail "disable $u (gone from this generation): $(last_line "$WORK/err")"
                fi
            fi
            RETIRED="$RETIRED$u," RETIRED_N=$((RETIRED_N + 1))
        done <"$WORK/retired"
    fi
    : >"$WORK/stale"
    [ ! -f "$STATE_DIR/files" ] || sort "$STATE_DIR/files" | comm -23 - "$WORK/paths" >"$WORK/stale"
    while read -r p; do
        case /$p/ in */../* | */./* | *//*) fail "$STATE_DIR/files: bad path $p" ;; esac
        [ -f "$R/$p" ] || [ -L "$R/$p" ] || continue
        rm -f "$R/$p" 2>"$WORK/err" || fail "cannot remove $R/$p (gone from this generation): $(last_line "$WORK/err")"
        REMOVED=$((REMOVED + 1))
    done <"$WORK/stale"
    # Then this generation's lists: a later run (an upgrade, a rollback, a downgrade by hand)
    # retires from them what it does not have.
    cp "$WORK/paths" "$STATE_DIR/files.new"
    cp "$WORK/units.sorted" "$STATE_DIR/units.new"
    state_file files || :
    state_file units || :
}
# Switches $STATE_DIR/$1.new in as $STATE_DIR/$1 (mode 0644) unless it says the same; returns 1
# (and removes the .new) when unchanged.
state_file() {
    if [ -f "$STATE_DIR/$1" ] && [ "$(sha_of "$STATE_DIR/$1.new")" = "$(sha_of "$STATE_DIR/$1")" ]; then
        rm -f "$STATE_DIR/$1.new"
        return 1
    fi
    chmod 0644 "$STATE_DIR/$1.new"
    replace_file "$STATE_DIR/$1.new" "$STATE_DIR/$1"
}
unit_file_exists() { # $1 a unit name: is its file in one of systemd's folders under $R?
    for d in etc/systemd/system usr/lib/systemd/system lib/systemd/system; do
        [ ! -e "$R/$d/$1" ] || return 0
    done
    return 1
}

# The units to restart for the changed files: each unit whose files lead to one (its unit file
# and drop-ins, the plan's files they name, the plan's files those name, and so on, through
# text files). A changed file that no unit leads to restarts its bundle's units, or every unit
# for a host file (certificates, keys), as the safe default. Units not yet running are started
# by the units step whatever this says.
restarts() {
    # The absolute paths each staged text file names (one grep over all: grep -I skips binaries),
    # kept when they are the plan's: lines <path> <plan path its text names>.
    awk -v s="$STAGING" 'FILENAME == ARGV[1] { dir[$1] = $3; next } { print s "/" dir[$4] "/rootfs/" $3 }' \
        "$WORK/archives" "$WORK/plan" | tr '\n' '\0' |
        xargs -0 grep -IHoE '/[A-Za-z0-9._@+-][A-Za-z0-9._/@+-]*' >"$WORK/named" 2>/dev/null || :
    # A staged file is <STAGING>/<64 hex>/rootfs/<plan path>: the plan path starts after that.
    awk -v skip=$((${#STAGING} + 74)) 'FILENAME == ARGV[1] { plan[$3] = 1; next }
        { f = $0; sub(/:.*/, "", f); m = substr($0, length(f) + 3)
          if (m in plan) print substr(f, skip), m }' "$WORK/plan" "$WORK/named" | sort -u >"$WORK/mentions"
    awk 'FILENAME == ARGV[1] { unit[$1] = 1; next }
        { n = split($3, p, "/"); base = p[n]; dropin = (n > 1) ? p[n - 1] : "" }
        $3 ~ /(^|\/)systemd\/system\// && (base in unit) { print base, $3 }
        $3 ~ /(^|\/)systemd\/system\/[^\/]+\.d\/[^\/]+$/ && (substr(dropin, 1, length(dropin) - 2) in unit) {
            print substr(dropin, 1, length(dropin) - 2), $3 }' "$WORK/units" "$WORK/plan" >"$WORK/unitfiles"
    # Every plan path each unit leads to (breadth first over the mentions).
    awk 'FILENAME == ARGV[1] { adj[$1] = adj[$1] " " $2; next }
        { u = $1; split("", seen); n = 1; q[1] = $2; seen[$2] = 1
          for (k = 1; k <= n; k++) {
              print u, q[k]; c = split(adj[q[k]], a, " ")
              for (j = 1; j <= c; j++) if (!(a[j] in seen)) { seen[a[j]] = 1; q[++n] = a[j] }
          } }' "$WORK/mentions" "$WORK/unitfiles" | sort -u >"$WORK/reach"
    while read -r path i; do
        found=$(awk -v p="$path" '$2 == p { print $1 }' "$WORK/reach")
        if [ -z "$found" ]; then
            if [ "$(awk -v i="$i" '$1 == i { print $2 }' "$WORK/archives")" = secrets ]; then
                found=$(cat "$WORK/units")
            else
                found=$(lines "$STAGING/$(awk -v i="$i" '$1 == i { print $3 }' "$WORK/archives")/UNITS")
            fi
        fi
        [ -z "$found" ] || echo "install.sh: /$path changed: restart $(echo "$found" | tr '\n' ' ')if running" >&2
        echo "$found"
    done <"$WORK/changed"
}

unswitch_fail() { # a failed copy (a full disk) removes this run's copies: the old files stay
    while read -r tmp; do rm -f "$tmp"; done <"$STATE_DIR/switch"
    rm -f "$STATE_DIR/switch"
    fail "$1"
}

# 9. Container images into the runtime the role has: IMAGES lists a bundle's archives
# (one per image, or one `images/<role>.tar` with all of them). An archive is skipped when
# its digest is recorded as imported, or when containerd already has every image
# IMAGE-DIGESTS lists for it with the pinned digest; then every image is checked.
step_images() {
    : >"$WORK/images"
    while read -r i kind sha f; do
        [ "$kind" = bundle ] || continue
        for p in $(lines "$STAGING/$sha/IMAGES"); do
            echo "$(awk -v p="$p" '$4 == p { print $1 }' "$STAGING/$sha/MANIFEST") $sha $p" >>"$WORK/images"
        done
    done <"$WORK/archives"
    if [ ! -s "$WORK/images" ]; then ok "images=0" && return 0; fi
    if command -v ctr >/dev/null; then
        rt=ctr
        if ! ctr version >/dev/null 2>&1 && live && use_systemctl; then
            # The runtime is part of the role: start it now to import (step 10 enables it).
            { systemctl daemon-reload && systemctl start containerd.service; } >"$WORK/err" 2>&1 ||
                fail "cannot start containerd: $(last_line "$WORK/err")"
            n=0
            until ctr version >/dev/null 2>&1; do
                n=$((n + 1))
                [ "$n" -le 30 ] || fail "containerd does not answer"
                sleep 1
            done
        fi
        ctr -n k8s.io images ls >"$WORK/ls" 2>"$WORK/err" || fail "ctr images ls: $(last_line "$WORK/err")"
    elif command -v docker >/dev/null; then
        rt=docker
    else
        fail "$(wc -l <"$WORK/images") images to import but neither ctr nor docker is installed"
    fi
    imported=0 present=0
    while read -r sha bundle p; do
        file=$STAGING/$bundle/$p
        if grep -qx "$sha $rt" "$STATE_DIR/images" 2>/dev/null || images_present "$STAGING/$bundle" "$p"; then
            present=$((present + 1)) && continue
        fi
        if [ "$rt" = ctr ]; then
            ctr -n k8s.io images import "$file" >"$WORK/err" 2>&1 || fail "ctr import ${file##*/}: $(last_line "$WORK/err")"
        else
            docker load -i "$file" >"$WORK/err" 2>&1 || fail "docker load ${file##*/}: $(last_line "$WORK/err")"
        fi
        { cat "$STATE_DIR/images" 2>/dev/null || :; echo "$sha $rt"; } >"$STATE_DIR/images.new"
        replace_file "$STATE_DIR/images.new" "$STATE_DIR/images"
        imported=$((imported + 1))
    done <"$WORK/images"
    CHANGED=$((CHANGED + imported))
    verify_image_digests "$rt"
    ok "imported=$imported present=$present runtime=$rt refs=$(tr '\n' ',' <"$WORK/refs" | sed 's/,$//')"
}

# Whether containerd (its `images ls` in $WORK/ls) already has every image that the
# IMAGE-DIGESTS of staged bundle $1 lists for archive $2, each with its pinned digest.
images_present() {
    [ "$rt" = ctr ] && [ -f "$1/IMAGE-DIGESTS" ] || return 1
    awk -v ls="$WORK/ls" -v p="$2" '
        FILENAME == ls { have[$1 " " $3] = 1; next }
        $1 == p { n++; if (!(($2 " " $3) in have)) missing = 1 }
        END { exit !(n > 0 && !missing) }
    ' "$WORK/ls" "$1/IMAGE-DIGESTS"
}

# Every image the bundles list in IMAGE-DIGESTS must be in containerd under its reference
# with the digest kiln pinned (docker keeps no manifest digest for loaded images).
verify_image_digests() {
    : >"$WORK/refs"
    [ "$1" = ctr ] || return 0
    ctr -n k8s.io images ls >"$WORK/ls" 2>"$WORK/err" || fail "ctr images ls: $(last_line "$WORK/err")"
    while read -r i kind sha f; do
        [ "$kind" = bundle ] || continue
        [ -f "$STAGING/$sha/IMAGE-DIGESTS" ] || continue
        while read -r path ref digest; do
            [ -n "$digest" ] || continue
            awk -v r="$ref" -v d="$digest" '$1 == r && $3 == d { found = 1 } END { exit !found }' "$WORK/ls" ||
                fail "image $ref from $path is not in containerd with digest $digest"
            echo "$ref@$digest" >>"$WORK/refs"
        done <"$STAGING/$sha/IMAGE-DIGESTS"
    done <"$WORK/archives"
}

# 10. Units in the bundles' order: enabled, started, and restarted only if one of their
# files changed (pending-restart, kept across a kill).
step_units() {
    list=$(tr '\n' ' ' <"$WORK/units")
    if ! use_systemctl; then
        rm -f "$STATE_DIR/pending-restart"
        ok "skipped (KILN_NO_SYSTEMCTL=1) units=${list% }" && return 0
    fi
    command -v systemctl >/dev/null || fail "systemctl not found"
    enabled=0 started=0 restarted=0 started_units="" skipped_units=""
    # Under KILN_ROOT the system is not running: enable only (systemctl --root).
    sc() { if live; then systemctl "$@"; else systemctl --root="$R" "$@"; fi; }
    if live; then systemctl daemon-reload || fail "systemctl daemon-reload failed"; fi
    for u in $list; do
        case $(sc is-enabled "$u" 2>/dev/null || :) in
        enabled | enabled-runtime | static | indirect | generated | alias) ;;
        masked*) fail "$u is masked" ;;
        *) sc enable "$u" >"$WORK/err" 2>&1 || fail "enable $u: $(last_line "$WORK/err")"
            enabled=$((enabled + 1)) ;;
        esac
        live || continue
        if [ "$(systemctl is-active "$u" 2>/dev/null || :)" != active ]; then
            state=$(systemctl is-active "$u" 2>/dev/null || :)
            systemctl start "$u" >"$WORK/err" 2>&1 || fail "start $u: $(last_line "$WORK/err")"
            # A unit whose conditions do not hold here (chrony without CAP_SYS_TIME in a
            # container) stays inactive: not a change, and not a failure.
            if [ "$(systemctl show -p ConditionResult --value "$u" 2>/dev/null)" = no ]; then
                skipped_units="$skipped_units$u,"
                continue
            fi
            started=$((started + 1))
            started_units="$started_units$u($state),"
        elif grep -qx "$u" "$STATE_DIR/pending-restart" 2>/dev/null; then
            systemctl restart "$u" >"$WORK/err" 2>&1 || fail "restart $u: $(last_line "$WORK/err")"
            restarted=$((restarted + 1))
        fi
    done
    rm -f "$STATE_DIR/pending-restart"
    CHANGED=$((CHANGED + enabled + started + restarted))
    ok "units=$(echo "$list" | tr ' ' ',' | sed 's/,$//') enabled=$enabled started=$started restarted=$restarted${started_units:+ started-units=${started_units%,}}${skipped_units:+ condition-skipped=${skipped_units%,}}"
}

# 11. Each role's HEALTH command, retried while its services come up. Roles wait on other
# hosts (an etcd quorum, the masters' etcd, the API through the VIP), which boot in any order
# and take minutes: each role gets KILN_HEALTH_WAIT seconds of wall time (default 15 min).
step_health() {
    tries=${KILN_HEALTH_TRIES:-0} wait=${KILN_HEALTH_WAIT:-900} checks=0
    while read -r i kind sha f; do
        [ "$kind" = bundle ] || continue
        cmd=$(lines "$STAGING/$sha/HEALTH")
        [ -n "$cmd" ] || continue
        checks=$((checks + 1)) n=1 since=$(date +%s)
        # 9<&-: a daemon the check starts must not hold the lock after we exit.
        until timeout "${KILN_HEALTH_TIMEOUT:-30}" sh -c "$cmd" >"$WORK/err" 2>&1 9<&-; do
            { [ "$tries" -gt 0 ] && [ "$n" -ge "$tries" ]; } || [ $(($(date +%s) - since)) -ge "$wait" ] &&
                unhealthy "role=$(kv "$STAGING/$sha/BUNDLE" KILN_ROLE) unhealthy after $n tries in $(($(date +%s) - since)) s: $(last_line "$WORK/err")"
            n=$((n + 1))
            sleep "${KILN_HEALTH_INTERVAL:-2}"
        done
    done <"$WORK/archives"
    ok "role=$ROLES checks=$checks"
}

# A failed health check of an upgrade (the state names another build) rolls the host back to
# the installed generation: its install.sh runs again from the copy kept when it converged,
# its markers in between, then `KILN rollback ok|fail …`; the run still fails.
unhealthy() {
    old_build=$(kv "$STATE_DIR/state" KILN_BUILD_ID 2>/dev/null || :)
    if [ -z "$old_build" ] || [ "$old_build" = "$BUILD_ID" ]; then fail "$1"; fi
    old_gen=$(kv "$STATE_DIR/state" KILN_GENERATION)
    FAILED=1 && say "$STEP fail $1"
    STEP=rollback k=$KEPT/$old_build
    if [ ! -f "$k/SECRETS_SHA256" ] || [ ! -f "$k/install.sh" ]; then
        say "rollback fail no copy of generation $old_gen (build $old_build) is kept in $k: the host keeps generation $GENERATION's files"
        exit 1
    fi
    echo "install.sh: generation $GENERATION is unhealthy: rolling back to generation $old_gen (build $old_build) from $k" >&2
    # The rollback run takes the lock itself.
    rm -f "$STATE_DIR/lock.pid" && exec 9<&-
    if sh "$k/install.sh" --dir "$k" --secrets-sha256 "$(cat "$k/SECRETS_SHA256")" 9<&-; then
        say "rollback ok generation=$old_gen build=$old_build (generation $GENERATION build $BUILD_ID was unhealthy)"
    else
        say "rollback fail generation $old_gen (build $old_build) did not install again: see its markers above"
    fi
    exit 1
}

# The inputs of each generation that converged (install.sh, the secrets and the bundles), kept
# for rollback. When the state was just written ($1), the one it named before ($2) stays beside
# it and older ones go; an unchanged rerun keeps what there is.
KEPT=$STATE_DIR/kept
keep_generation() {
    k=$KEPT/$BUILD_ID
    if [ ! -f "$k/SECRETS_SHA256" ]; then
        rm -rf "$k.part" && mkdir -p "$k.part" # 0700 (umask): the secrets are in it
        while read -r i kind sha f; do
            # Under the names BUNDLES gives (a download is named by its digest).
            n=secrets.tar.gz
            [ "$kind" = secrets ] || n=$(kept_name "$sha" "$f")
            ln -f "$f" "$k.part/$n" 2>/dev/null && continue
            # A copy (the bundles are on a seed medium) must leave room for a rerun.
            kib=$(($(wc -c <"$f") / 1024 + 1))
            fs_of "$KEPT" >"$WORK/fs" && read -r kfree kmnt <"$WORK/fs"
            if [ $((kfree - kib)) -lt "$ROOM_KIB" ]; then
                echo "only $kfree KiB free on $kmnt: a copy of $n ($kib KiB) would leave less than a rerun needs ($ROOM_KIB KiB)" >"$WORK/err"
                break
            fi
            cp "$f" "$k.part/$n" 2>"$WORK/err" || break
        done <"$WORK/archives"
        # The host converged either way: without room for the copy it only cannot come back here.
        if [ "$(find "$k.part" -type f | wc -l)" = "$(wc -l <"$WORK/archives")" ] &&
            cp "$0" "$k.part/install.sh" 2>"$WORK/err" && echo "$SECRETS_SHA" >"$k.part/SECRETS_SHA256"; then
            sync && mv "$k.part" "$k" && keep_delta_bases "$k"
        else
            echo "install.sh: cannot keep generation $GENERATION in $k for rollback: $(last_line "$WORK/err")" >&2
            rm -rf "$k.part"
        fi
    fi
    [ "$1" = written ] || return 0
    for d in "$KEPT"/*; do
        [ -e "$d" ] || continue
        case ${d##*/} in "$BUILD_ID" | "$2") ;; *) rm -rf "$d" ;; esac
    done
}

# 12. The state, written last and atomically: what converged, for reruns and rollback checks.
step_state() {
    before=$(kv "$STATE_DIR/state" KILN_BUILD_ID 2>/dev/null || :)
    bundles=$(awk '$2 == "bundle" { n = $4; sub(/.*\//, "", n); printf "%s%s:%s", s, $3, n; s = "," }' "$WORK/archives")
    {
        echo "KILN_CLUSTER=$(kv "$WORK/HOST" KILN_CLUSTER)"
        echo "KILN_HOST=$HOST"
        echo "KILN_BUILD_ID=$BUILD_ID"
        echo "KILN_GENERATION=$GENERATION"
        echo "KILN_ROLES=$ROLES"
        echo "KILN_SECRETS_SHA256=$SECRETS_SHA"
        echo "KILN_BUNDLES=$bundles"
    } >"$STATE_DIR/state.new"
    if state_file state; then
        sync
        CHANGED=$((CHANGED + 1)) what=written
    else
        what=unchanged
    fi
    keep_generation "$what" "$before"
    # Staging of other builds is no longer needed (bundles can be large).
    for d in "$STAGING"/*; do
        [ -e "$d" ] || continue
        awk -v s="${d##*/}" '$3 == s { found = 1 } END { exit !found }' "$WORK/archives" || rm -rf "$d"
    done
    # So are downloads of other builds, and partial ones of runs that are gone.
    # An install.sh a seed fetched is named by its digest: this one's stays for the seed's rerun.
    self=$DOWNLOADS/$(sha_of "$0").sh
    for d in "$DOWNLOADS"/*.tar.gz "$DOWNLOADS"/*.sh "$DOWNLOADS"/.*.part; do
        [ -e "$d" ] || continue
        case $d in
        *.part) pid=${d%.part} && pid=${pid##*.} && { kill -0 "$pid" 2>/dev/null || rm -f "$d"; } ;;
        *.sh) [ "$d" = "$self" ] || rm -f "$d" ;;
        *) awk -v f="$d" '$4 == f { found = 1 } END { exit !found }' "$WORK/archives" || rm -f "$d" ;;
        esac
    done
    ok "$what $STATE_DIR/state"
}

add_source() { # one word each: sources are split on whitespace when tried
    case $1 in
    medium | http://?* | https://?* | oci://?*/?* | oci+http://?*/?*) ;;
    *) fail "usage: --source $1: expected medium, http(s)://…, oci://host/repo or oci+http://host/repo" ;;
    esac
    case $1 in *[!A-Za-z0-9._~/:%+-]*) fail "usage: --source $1: unexpected character" ;; esac
    SOURCES="${SOURCES:+$SOURCES }${1%/}"
}
while [ $# -gt 0 ]; do
    case $1 in
    --dir) [ $# -ge 2 ] || fail "usage: --dir needs a value"; DIR=$2 && shift 2 ;;
    --dir=*) DIR=${1#--dir=} && shift ;;
    --secrets-sha256) [ $# -ge 2 ] || fail "usage: --secrets-sha256 needs a value"; SECRETS_SHA=$2 && shift 2 ;;
    --secrets-sha256=*) SECRETS_SHA=${1#--secrets-sha256=} && shift ;;
    --signing-key) [ $# -ge 2 ] || fail "usage: --signing-key needs a value"; SIGNING_KEY=$2 && shift 2 ;;
    --signing-key=*) SIGNING_KEY=${1#--signing-key=} && shift ;;
    --source) [ $# -ge 2 ] || fail "usage: --source needs a value"; add_source "$2" && shift 2 ;;
    --source=*) add_source "${1#--source=}" && shift ;;
    -h | --help) sed -n '2,/^set -eu/p' "$0" | sed '$d' && exit 0 ;;
    *) fail "usage: unknown argument $1 (sh install.sh --dir DIR --secrets-sha256 SHA256 [--source SOURCE]...)" ;;
    esac
done
# What every run needs, before the first use (a missing tar must not read as a bad archive);
# preflight adds what this host's roles need.
need 'every run' awk cat chmod comm cp cut date df find flock grep gzip head mkdir mktemp mv rm \
    sed sha256sum sleep sort stat sync tail tar tr uname uniq wc xargs
if [ -n "$LACK" ]; then STEP=preflight && fail "missing tools: $LACK"; fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kiln-install.XXXXXX")

for STEP in verify list preflight extract manifest prep packages install images units health state; do
    "step_$STEP"
done
STEP='done'
if [ "$CHANGED" = 0 ]; then unchanged=" unchanged"; else unchanged=; fi
ok "role=$ROLES build=$BUILD_ID generation=$GENERATION$unchanged"
