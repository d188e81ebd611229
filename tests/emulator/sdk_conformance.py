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
    print("SDK conformance: all ok")


if __name__ == "__main__":
    main()
