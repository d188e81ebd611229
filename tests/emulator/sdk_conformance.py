"""Azure's official Python SDK (Debian python3-azure: azure-keyvault-keys,
azure-identity) against the emulator over verified TLS.

The switches this needs, and nothing else:
  * REQUESTS_CA_BUNDLE=<emulator CA>: trust the emulator's CA (the SDK's
    requests transport reads it; connection_verify=<CA> works too).
  * ClientSecretCredential(authority="https://localhost:PORT", and instance
    discovery off: instance_discovery=False on azure-identity 1.13,
    disable_instance_discovery=True on later releases), so MSAL reads the
    emulator's OpenID document instead of asking login.microsoftonline.com.
  * *.localhost resolved to 127.0.0.1 inside this process (emu_fixture patches
    socket.getaddrinfo); /etc/hosts lines do the same for other programs.
Challenge-resource verification stays ON: the emulator's challenge names
resource="https://vault.localhost:PORT", which the SDK's host check accepts.
"""
import inspect
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from emu_fixture import Emulator  # noqa: E402

CONFIG = """
[emulator]
tenant = dev-tenant
[vault:dev]
[mhsm:dev]
[principal:dev-client]
secret = dev-secret
permissions = all
[principal:wrapper]
secret = wrapper-secret
permissions = wrapKey unwrapKey
"""


def credential(emu, client, secret):
    from azure.identity import ClientSecretCredential
    from azure.identity._internal import msal_credentials
    params = inspect.signature(msal_credentials.MsalCredential.__init__).parameters
    switch = ({"disable_instance_discovery": True} if "disable_instance_discovery" in params
              else {"instance_discovery": False})
    return ClientSecretCredential("dev-tenant", client, secret,
                                  authority="https://localhost:%d" % emu.port, **switch)


def count(emu, pattern):
    return len(re.findall(pattern, emu.read_log()))


def main():
    with Emulator(config=CONFIG) as emu:
        os.environ["REQUESTS_CA_BUNDLE"] = emu.ca
        from azure.core.exceptions import HttpResponseError
        from azure.keyvault.keys import KeyClient
        from azure.keyvault.keys.crypto import CryptographyClient, KeyWrapAlgorithm

        owner = credential(emu, "dev-client", "dev-secret")
        wrapper = credential(emu, "wrapper", "wrapper-secret")
        vault_url = "https://dev.vault.localhost:%d" % emu.port
        keys = KeyClient(vault_url, owner)
        dek = os.urandom(32)

        key = keys.create_rsa_key("sdk-rsa", size=2048)
        assert key.key_type == "RSA" and key.properties.version, key
        got = keys.get_key("sdk-rsa")
        assert got.id == key.id and got.key.n == key.key.n
        print("create + get: ok", key.id)

        # local wrap: the SDK wraps with the public key it fetched; no wrapkey call
        before = count(emu, r"/wrapkey ")
        local = CryptographyClient(got, owner).wrap_key(KeyWrapAlgorithm.rsa_oaep_256, dek)
        assert count(emu, r"/wrapkey ") == before, "local wrap went to the service"
        # service wrap: 'wrapper' may not get the key (403), so the SDK asks the service
        remote_client = CryptographyClient(key.id, wrapper)
        remote = remote_client.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, dek)
        assert count(emu, r"/wrapkey 200") == before + 1, "service wrap did not reach the service"
        for wrapped in (local, remote):
            assert remote_client.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped.encrypted_key).key == dek
        print("wrap local + service, unwrap: ok")

        rotated = keys.rotate_key("sdk-rsa")
        assert rotated.properties.version != key.properties.version
        versions = [p.version for p in keys.list_properties_of_key_versions("sdk-rsa")]
        assert sorted(versions) == sorted([key.properties.version, rotated.properties.version]), versions
        print("rotate + list versions: ok", len(versions))

        keys.update_key_properties("sdk-rsa", key.properties.version, enabled=False)
        try:
            CryptographyClient(key.id, wrapper).unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, remote.encrypted_key)
            raise AssertionError("unwrap with a disabled key succeeded")
        except HttpResponseError as e:
            assert e.status_code == 403 and e.error.code == "Forbidden", (e.status_code, e.error)
            print("disabled key -> HttpResponseError 403 Forbidden: ok:", e.error.message)

        hsm = KeyClient("https://dev.managedhsm.localhost:%d" % emu.port, owner)
        aes = hsm.create_oct_key("sdk-aes", size=256, hardware_protected=True)
        assert aes.key_type == "oct-HSM", aes.key_type
        aes_client = CryptographyClient(aes, owner)
        wrapped = aes_client.wrap_key(KeyWrapAlgorithm.aes_256, dek)
        assert aes_client.unwrap_key(KeyWrapAlgorithm.aes_256, wrapped.encrypted_key).key == dek
        print("managed HSM oct-HSM A256KW round trip: ok")

        # App Service managed identity: the SDK picks it from IDENTITY_ENDPOINT + IDENTITY_HEADER
        from azure.core.exceptions import ResourceExistsError
        from azure.identity import ManagedIdentityCredential
        os.environ["IDENTITY_ENDPOINT"] = "https://localhost:%d/msi/token" % emu.port
        os.environ["IDENTITY_HEADER"] = "dev-identity-header"
        mi_keys = KeyClient(vault_url, ManagedIdentityCredential())
        assert mi_keys.get_key("sdk-rsa").id == rotated.id
        assert count(emu, r"GET localhost:\d+/msi/token 200 principal=dev-client") == 1
        print("App Service managed identity (IDENTITY_ENDPOINT): ok")

        # purge protection: the SDK reads recoveryLevel and sees purge refused with 403
        keys.begin_delete_key("sdk-rsa").wait()
        deleted = keys.get_deleted_key("sdk-rsa")
        assert deleted.properties.recovery_level == "Recoverable+Purgeable", deleted.properties.recovery_level
        try:
            keys.create_rsa_key("sdk-rsa")
            raise AssertionError("a soft-deleted name was reused")
        except ResourceExistsError:
            pass
        print("soft delete, recoveryLevel: ok")
    with Emulator(config=CONFIG.replace("[vault:dev]", "[vault:dev]\npurge_protection = yes")) as emu:
        os.environ["REQUESTS_CA_BUNDLE"] = emu.ca
        keys = KeyClient("https://dev.vault.localhost:%d" % emu.port, credential(emu, "dev-client", "dev-secret"))
        key = keys.create_rsa_key("kept")
        assert key.properties.recovery_level == "Recoverable" and key.properties.recoverable_days == 90
        keys.begin_delete_key("kept").wait()
        try:
            keys.purge_deleted_key("kept")
            raise AssertionError("purge succeeded under purge protection")
        except HttpResponseError as e:
            assert e.status_code == 403 and "purge protection" in e.error.message, (e.status_code, e.error)
        keys.begin_recover_deleted_key("kept").wait()
        print("purge protection -> recoveryLevel Recoverable, purge HttpResponseError 403: ok")
    failed = cmk_calls()
    if failed:
        sys.exit("SDK conformance: %d call(s) failed" % failed)
    print("SDK conformance: all ok")


def cmk_calls():
    """The calls a CMK operator adds (rotation policy, backup/restore, import,
    random bytes) and the out-of-scope ones, one PASS/FAIL line per call, at the
    SDK's default api-version. Returns the number that failed."""
    import json
    import urllib.parse
    import urllib.request
    from azure.core.exceptions import HttpResponseError, ResourceExistsError
    from azure.core.pipeline.policies import SansIOHTTPPolicy
    from azure.keyvault.keys import (JsonWebKey, KeyClient, KeyRotationLifetimeAction, KeyRotationPolicy,
                                     KeyRotationPolicyAction)
    from azure.keyvault.keys.crypto import CryptographyClient, KeyWrapAlgorithm, SignatureAlgorithm
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    versions = set()

    class RecordApiVersion(SansIOHTTPPolicy):
        def on_request(self, request):
            q = urllib.parse.parse_qs(urllib.parse.urlparse(request.http_request.url).query)
            versions.update(q.get("api-version", []))

    results = []

    def call(name, fn):
        try:
            detail = fn()
            results.append(True)
            print("PASS %s%s" % (name, ": " + detail if detail else ""))
        except Exception as e:  # noqa: BLE001 - every failure is reported, then counted
            results.append(False)
            print("FAIL %s: %s %s" % (name, type(e).__name__, e))

    def unsupported(fn, inner):
        try:
            fn()
        except HttpResponseError as e:
            assert e.status_code == 400 and inner in str(e), (e.status_code, str(e)[:200])
            return "400 " + e.error.code
        raise AssertionError("an out-of-scope operation was accepted")

    dek = os.urandom(32)
    with Emulator(config=CONFIG, admin=True) as emu:
        os.environ["REQUESTS_CA_BUNDLE"] = emu.ca
        cred = credential(emu, "dev-client", "dev-secret")
        keys = KeyClient("https://dev.vault.localhost:%d" % emu.port, cred, per_call_policies=[RecordApiVersion()])
        hsm = KeyClient("https://dev.managedhsm.localhost:%d" % emu.port, cred, per_call_policies=[RecordApiVersion()])
        first = keys.create_rsa_key("py-rsa", size=2048)
        wrapped = CryptographyClient(first, cred).wrap_key(KeyWrapAlgorithm.rsa_oaep_256, dek).encrypted_key
        state = {}

        def advance(days):
            req = urllib.request.Request("http://127.0.0.1:%d/admin/clock" % emu.admin_port,
                                         data=json.dumps({"advance_s": days * 86400}).encode(), method="POST")
            with urllib.request.urlopen(req) as r:
                assert r.status == 200

        def get_default_policy():
            p = keys.get_key_rotation_policy("py-rsa")
            a = p.lifetime_actions
            assert len(a) == 1 and a[0].action == KeyRotationPolicyAction.notify and a[0].time_before_expiry == "P30D", a

        def update_policy():
            policy = KeyRotationPolicy(expires_in="P180D", lifetime_actions=[
                KeyRotationLifetimeAction(KeyRotationPolicyAction.rotate, time_after_create="P90D")])
            p = keys.update_key_rotation_policy("py-rsa", policy)
            assert p.expires_in == "P180D" and p.lifetime_actions[0].time_after_create == "P90D", vars(p)

        def bad_policy():
            try:
                keys.update_key_rotation_policy("py-rsa", KeyRotationPolicy(lifetime_actions=[
                    KeyRotationLifetimeAction(KeyRotationPolicyAction.rotate, time_after_create="P6D")]))
            except HttpResponseError as e:
                assert e.status_code == 400, e.status_code
                return "400: " + e.error.message[:60]
            raise AssertionError("a 6-day rotation was accepted")

        def carried_out():
            advance(91)
            n = len(list(keys.list_properties_of_key_versions("py-rsa")))
            assert n == 2, n
            latest = keys.get_key("py-rsa")
            assert (latest.properties.expires_on - latest.properties.created_on).days == 180
            return "new version " + latest.properties.version

        def backup():
            state["blob"] = keys.backup_key("py-rsa")
            assert isinstance(state["blob"], bytes) and len(state["blob"]) > 100

        def restore_conflict():
            try:
                keys.restore_key_backup(state["blob"])
            except ResourceExistsError:
                return "ResourceExistsError (409)"
            raise AssertionError("restored over an existing key")

        def restore():
            keys.begin_delete_key("py-rsa").wait()
            keys.purge_deleted_key("py-rsa")
            k = keys.restore_key_backup(state["blob"])
            assert k.name == "py-rsa"
            got = CryptographyClient(first.id, cred).unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped).key
            assert got == dek, "the restored key unwraps what the original wrapped"

        def import_rsa():
            priv = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            n = priv.private_numbers()

            def raw(i):
                return i.to_bytes((i.bit_length() + 7) // 8, "big")
            jwk = JsonWebKey(kty="RSA", n=raw(n.public_numbers.n), e=raw(n.public_numbers.e), d=raw(n.d),
                             p=raw(n.p), q=raw(n.q), dp=raw(n.dmp1), dq=raw(n.dmq1), qi=raw(n.iqmp),
                             key_ops=["wrapKey", "unwrapKey"])
            k = keys.import_key("py-byok", jwk)
            outside = priv.public_key().encrypt(dek, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()),
                                                                 algorithm=hashes.SHA256(), label=None))
            assert CryptographyClient(k.id, cred).unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, outside).key == dek

        def import_oct():
            from cryptography.hazmat.primitives.keywrap import aes_key_wrap
            k = os.urandom(32)
            imported = hsm.import_key("py-aes", JsonWebKey(kty="oct-HSM", k=k, key_ops=["wrapKey", "unwrapKey"]))
            out = CryptographyClient(imported.id, cred).unwrap_key(KeyWrapAlgorithm.aes_256, aes_key_wrap(k, dek))
            assert out.key == dek

        def rng():
            # 4.8 returns bytes; later releases a RandomBytes with .value
            a, b = (getattr(r, "value", r) for r in (hsm.get_random_bytes(32), hsm.get_random_bytes(32)))
            assert len(a) == 32 and a != b
            try:
                hsm.get_random_bytes(129)
            except HttpResponseError as e:
                assert e.status_code == 400
                return "32 bytes; 129 -> 400"
            raise AssertionError("129 bytes were served")

        call("KeyClient.get_key_rotation_policy (default)", get_default_policy)
        call("KeyClient.update_key_rotation_policy (invalid: 6 days)", bad_policy)
        call("KeyClient.update_key_rotation_policy", update_policy)
        call("rotation policy carried out (clock +91 days, list_properties_of_key_versions)", carried_out)
        call("KeyClient.backup_key", backup)
        call("KeyClient.restore_key_backup (over the existing key: 409)", restore_conflict)
        call("KeyClient.restore_key_backup", restore)
        call("KeyClient.import_key (RSA, BYOK)", import_rsa)
        call("KeyClient.import_key (oct-HSM, Managed HSM)", import_oct)
        call("KeyClient.get_random_bytes (Managed HSM)", rng)
        call("KeyClient.create_ec_key (unsupported)",
             lambda: unsupported(lambda: keys.create_ec_key("py-ec"), "KeyTypeNotSupported"))
        signer = keys.create_rsa_key("py-signer")
        call("CryptographyClient.sign (unsupported)", lambda: unsupported(
            lambda: CryptographyClient(signer.id, cred).sign(SignatureAlgorithm.rs256, b"\0" * 32),
            "OperationNotSupported"))
        call("KeyClient.release_key (unsupported)", lambda: unsupported(
            lambda: keys.release_key("py-signer", "attestation-token"), "OperationNotSupported"))
    failed = results.count(False) + (0 if len(versions) == 1 else 1)
    from azure.keyvault.keys._version import VERSION
    import azure.identity
    print("azure-keyvault-keys %s, azure-identity %s; api-version sent (the SDK's default): %s"
          % (VERSION, azure.identity.__version__, ", ".join(sorted(versions))))
    print("%d passed, %d failed" % (len(results) - results.count(False), failed))
    return failed


if __name__ == "__main__":
    main()
