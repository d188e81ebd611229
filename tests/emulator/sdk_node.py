"""Azure's JavaScript SDK (@azure/keyvault-keys, @azure/identity from the npm
registry) against the emulator over verified TLS: node/sdk_conformance.mjs
drives every KeyClient and CryptographyClient method a CMK flow uses, at the
SDK's default api-version.

The packages (node/package.json, exact versions) are installed with npm into
$NODE_SDK_CACHE (meson sets it inside the build dir; never committed). If
node, npm or the install fails, this test FAILS: it never skips.
"""
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from emu_fixture import Emulator  # noqa: E402

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node")


def install(cache):
    """npm install node/package.json into cache; returns the script's path there."""
    for tool in ("node", "npm"):
        if not shutil.which(tool):
            sys.exit("FAIL: %s is not installed (scripts/packages/node.txt; scripts/install-deps installs it)" % tool)
    os.makedirs(cache, exist_ok=True)
    for name in ("package.json", "sdk_conformance.mjs"):
        shutil.copyfile(os.path.join(HERE, name), os.path.join(cache, name))
    r = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=cache,
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        sys.exit("FAIL: npm install of @azure/keyvault-keys and @azure/identity failed (exit %d):\n%s%s"
                 % (r.returncode, r.stdout[-2000:], r.stderr[-2000:]))
    for pkg in ("keyvault-keys", "identity"):
        if not os.path.isfile(os.path.join(cache, "node_modules", "@azure", pkg, "package.json")):
            sys.exit("FAIL: npm install left no @azure/%s in %s" % (pkg, cache))
    return os.path.join(cache, "sdk_conformance.mjs")


def main():
    cache = os.environ.get("NODE_SDK_CACHE") or sys.exit("FAIL: NODE_SDK_CACHE is not set (meson sets it)")
    script = install(cache)
    with Emulator(admin=True) as emu:
        env = dict(os.environ, EMU_PORT=str(emu.port), EMU_ADMIN_PORT=str(emu.admin_port),
                   NODE_EXTRA_CA_CERTS=emu.ca)
        r = subprocess.run(["node", script], cwd=cache, env=env, timeout=240)
        if r.returncode != 0:
            print(emu.read_log()[-3000:], file=sys.stderr)
            sys.exit("FAIL: the JavaScript SDK conformance script exited %d" % r.returncode)
    print("JavaScript SDK conformance: all ok")


if __name__ == "__main__":
    main()
