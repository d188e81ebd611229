#!/bin/bash
# test_debs.sh SRC: build keybroker's Debian packages from a copy of SRC with
# dpkg-buildpackage -us -uc -b, check them with lintian (no error, and no
# warning that debian/*lintian-overrides does not explain), install them on
# this machine, start the installed keybrokerd as the keybroker user the
# package created on a fresh SoftHSM token, and make a round trip with the
# installed keybroker CLI (as a member of keybroker-clients) and with a
# program built against the installed libkeybroker-dev. The packages are
# purged at the end. Needs root (CI runs it on a throwaway machine): skipped
# (exit 77) otherwise.
set -euo pipefail
src=$1
module=${KB_SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
apt_lock=(-o DPkg::Lock::Timeout=900)

if [ "$(id -u)" -ne 0 ]; then
	echo "SKIP: installing packages needs root"
	exit 77
fi
for tool in dpkg-buildpackage lintian dh; do
	command -v "$tool" >/dev/null || { echo "SKIP: $tool is not installed (scripts/packages/packaging.txt)"; exit 77; }
done

work=$(mktemp -d /tmp/kb-debs-XXXXXX)
chmod 755 "$work"
broker=""
installed=""
cleanup() {
	if [ -n "$broker" ] && kill -0 "$broker" 2>/dev/null; then
		kill -KILL "$broker" 2>/dev/null || true
	fi
	if [ -n "$installed" ]; then
		echo "== purging the packages"
		apt-get purge -y -qq "${apt_lock[@]}" keybroker libkeybroker0 libkeybroker-dev akv-emulator python3-keybroker >/dev/null 2>&1 || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT
step() { echo; echo "== $*"; }
fail() { echo "FAIL: $*"; exit 1; }

step "copying the source tree"
mkdir "$work/src"
# what git tracks, and new files it does not ignore (not build dirs or state/)
if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	git -C "$src" ls-files -co --exclude-standard -z | (cd "$src" && xargs -0 cp --parents -t "$work/src")
else
	tar -C "$src" --exclude='./build*' --exclude=./state -cf - . | tar -C "$work/src" -xf -
fi

step "dpkg-buildpackage -us -uc -b"
start=$(date +%s)
if ! (cd "$work/src" && dpkg-buildpackage -us -uc -b) > "$work/build.log" 2>&1; then
	tail -n 40 "$work/build.log"
	fail "dpkg-buildpackage failed"
fi
echo "built in $(( $(date +%s) - start )) s:"
debs=()
for p in keybroker libkeybroker0 libkeybroker-dev akv-emulator python3-keybroker; do
	deb=$(ls "$work"/${p}_*.deb)
	debs+=("$deb")
	printf '  %-18s %s  %s\n' "$p" "$(dpkg-deb -f "$deb" Version)" "$(basename "$deb")"
done

step "lintian"
changes=$(ls "$work"/keybroker_*.changes)
lintian --info --display-level '>=pedantic' "$changes" > "$work/lintian.txt" 2>&1 || true
grep -v '^N:' "$work/lintian.txt" | grep -v 'running with root privileges' || true
echo "summary: $(grep -c '^E:' "$work/lintian.txt" || true) errors, $(grep -c '^W:' "$work/lintian.txt" || true) warnings," \
	"$(grep -c '^I:' "$work/lintian.txt" || true) info, $(grep -c '^P:' "$work/lintian.txt" || true) pedantic" \
	"($(grep -h '^[a-z]' "$src"/debian/*lintian-overrides | wc -l) overridden, each explained in debian/*lintian-overrides)"
if grep -q '^[EW]:' "$work/lintian.txt"; then
	fail "lintian reports errors or unexplained warnings"
fi

step "installing the packages"
apt-get install -y -qq --no-install-recommends "${apt_lock[@]}" "${debs[@]}" > "$work/install.log" 2>&1 ||
	{ cat "$work/install.log"; fail "the packages do not install"; }
installed=1
dpkg-query -W -f='  ${Package} ${Version} ${Status}\n' keybroker libkeybroker0 libkeybroker-dev akv-emulator

step "what the packages put in place"
getent passwd keybroker | grep -q ':/var/lib/keybroker:/usr/sbin/nologin$' || fail "no system user keybroker"
getent group keybroker >/dev/null || fail "no group keybroker"
getent group keybroker-clients >/dev/null || fail "no group keybroker-clients"
echo "  user $(getent passwd keybroker), groups keybroker and keybroker-clients"
for f in /usr/sbin/keybrokerd /usr/bin/keybroker /usr/bin/akv-emulator \
	/usr/share/man/man8/keybrokerd.8.gz /usr/share/man/man5/keybrokerd.conf.5.gz \
	/usr/share/man/man1/keybroker.1.gz /usr/share/man/man1/akv-emulator.1.gz \
	/usr/share/man/man3/libkeybroker.3.gz /usr/share/bash-completion/completions/keybroker \
	/lib/systemd/system/keybrokerd.service /lib/systemd/system/keybrokerd.socket \
	/usr/share/doc/keybroker/examples/keybrokerd.conf /usr/share/doc/keybroker/SECURITY.md \
	/usr/include/keybroker.h /usr/include/keybroker/kb_codes.h /usr/include/keybroker/kb_socket.h \
	/usr/include/keybroker/kb_version.h; do
	[ -e "$f" ] || fail "$f is not installed"
done
for b in keybrokerd keybroker akv-emulator; do
	echo "  $("$b" --version)"
done
# libkeybroker's ABI as installed: header paths, exports against the symbols file, codes, version
abi=$(KB_VERSION=$(dpkg-query -W -f='${Version}' libkeybroker-dev) python3 "$src/tests/package/check_abi.py" system all) ||
	fail "libkeybroker's ABI as installed (tests/package/check_abi.py): $abi"
echo "$abi" | sed 's/^/  /'
man -w keybrokerd.conf | grep -q '/usr/share/man/man5/keybrokerd.conf.5' || fail "man keybrokerd.conf finds no page"
echo "  man keybrokerd.conf: $(man -w keybrokerd.conf)"
# the installed units are the ones in systemd/, hardening and all
for u in keybrokerd.service keybrokerd.socket; do
	sed -e 's|@sbindir@|/usr/sbin|g' -e 's|@docdir@|/usr/share/doc/keybroker|g' "$src/systemd/$u" |
		diff - "/lib/systemd/system/$u" || fail "the installed $u differs from systemd/$u"
done
echo "  units: as systemd/ has them ($(grep -c '^Protect\|^Restrict\|^SystemCall\|^NoNewPrivileges\|^Private' /lib/systemd/system/keybrokerd.service) hardening lines)"
bash -c 'source /usr/share/bash-completion/bash_completion && _completion_loader keybroker; complete -p keybroker' |
	grep -q -- '-F _keybroker keybroker$' || fail "bash-completion does not load the installed completion"
echo "  bash completion: loaded on demand by bash-completion"

step "keybrokerd from /usr/sbin as the keybroker user, on a SoftHSM token"
run=$work/run client=$work/client
mkdir -m 0700 "$run/" 2>/dev/null || mkdir -p "$run"
"$src/scripts/softhsm-token" "$run/token" kbpkg >/dev/null
mkdir -m 0755 "$run/sock"
chown -R keybroker:keybroker "$run"
chmod 0755 "$run"
cat > "$run/keybrokerd.conf" <<CONF
[broker]
socket = $run/sock/keybroker.sock
socket_mode = 0660
socket_group = keybroker-clients
allow_gids = keybroker-clients
admin_gids = keybroker-clients
cache_capacity = 1000

[key:rsa]
backend = pkcs11
module = $module
uri = pkcs11:token=kbpkg;object=rsa-kek
pin_file = $run/token/user.pin

[key:aes]
backend = pkcs11
module = $module
uri = pkcs11:token=kbpkg;object=aes-kek
pin_file = $run/token/user.pin
CONF
chmod 0644 "$run/keybrokerd.conf"
# keybroker-clients as a supplementary group lets the broker give its own
# socket to that group (keybrokerd.socket does that under systemd)
as_broker=(setpriv --reuid=keybroker --regid=keybroker --groups=keybroker-clients)
SOFTHSM2_CONF=$run/token/softhsm2.conf "${as_broker[@]}" /usr/sbin/keybrokerd -c "$run/keybrokerd.conf" --check
# cache_capacity = 1000 locks well inside the default RLIMIT_MEMLOCK (8 MiB),
# which a container may not let even root raise (the unit sets 64M)
SOFTHSM2_CONF=$run/token/softhsm2.conf "${as_broker[@]}" /usr/sbin/keybrokerd -c "$run/keybrokerd.conf" > "$run/keybrokerd.log" 2>&1 &
broker=$!

mkdir -m 0755 "$client"
chown nobody "$client"
as_client=(setpriv --reuid=nobody --regid=keybroker-clients --clear-groups env -i
	PATH=/usr/bin:/bin KEYBROKER_SOCKET=$run/sock/keybroker.sock HOME=$client)
kb() { (cd "$client" && "${as_client[@]}" /usr/bin/keybroker "$@"); }
deadline=$(( $(date +%s) + 30 ))
until kb status >/dev/null 2>&1; do
	kill -0 "$broker" 2>/dev/null || { cat "$run/keybrokerd.log"; fail "keybrokerd exited"; }
	[ "$(date +%s)" -lt "$deadline" ] || { cat "$run/keybrokerd.log"; fail "keybrokerd did not answer in 30 s"; }
	sleep 0.1
done
echo "  serving as $(ps -o user= -p "$broker"), socket $(stat -c '%U:%G %a' "$run/sock/keybroker.sock")"

step "a round trip with /usr/bin/keybroker, as nobody in keybroker-clients"
kb datakey aes --out dek.bin > "$client/dek.blob"
echo "  datakey aes: $(cut -c1-40 "$client/dek.blob")..."
kb unwrap --out dek2.bin < "$client/dek.blob"
cmp "$client/dek.bin" "$client/dek2.bin" || fail "unwrap gave another DEK"
echo "  unwrap: the same 32-byte DEK"
echo "  rotate aes: $(kb rotate aes)"
kb flush > /dev/null
kb unwrap --out dek3.bin < "$client/dek.blob"
cmp "$client/dek.bin" "$client/dek3.bin" || fail "the old blob does not unwrap after rotate"
echo "  the old blob still unwraps after rotate and flush"
head -c 32 /dev/urandom > "$client/pt.bin"
kb wrap rsa --in pt.bin > "$client/rsa.blob"
kb unwrap --out pt2.bin < "$client/rsa.blob"
cmp "$client/pt.bin" "$client/pt2.bin" || fail "rsa wrap/unwrap round trip"
echo "  wrap/unwrap rsa: the same 32 bytes"
kb doctor aes | sed 's/^/  /'

step "a program built against the installed libkeybroker-dev"
cp /usr/share/doc/libkeybroker-dev/examples/example.c "$client/"
cc "$client/example.c" $(pkg-config --cflags --libs keybroker) -o "$client/example"
(cd "$client" && "${as_client[@]}" ./example aes) | sed 's/^/  /'

step "a Python program with the installed python3-keybroker"
(cd "$client" && "${as_client[@]}" /usr/bin/python3 -c '
from keybroker import Client
with Client() as kb:
    dk = kb.datakey("aes")
    assert kb.unwrap(dk.blob).plaintext == dk.plaintext
    print("  keybroker.Client: datakey and unwrap agree")') || fail "python3-keybroker round trip"

step "akv-emulator from /usr/bin"
mkdir -m 0700 "$work/tls"
akv-emulator --init-tls "$work/tls" --init-only --quiet
ls "$work/tls" | tr '\n' ' ' | sed 's/^/  /'; echo

step "stopping keybrokerd"
kill -TERM "$broker"
rc=0
wait "$broker" || rc=$?
broker=""
[ "$rc" -eq 0 ] || { cat "$run/keybrokerd.log"; fail "keybrokerd exited $rc on SIGTERM"; }
[ ! -e "$run/sock/keybroker.sock" ] || fail "the socket is left behind"
echo "  exit 0, socket removed"
echo
echo "ok: the packages build, pass lintian, install and serve a round trip"
