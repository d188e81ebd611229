// Azure's JavaScript SDK (@azure/keyvault-keys, @azure/identity from npm)
// against akv-emulator, at the SDK's default api-version: every KeyClient and
// CryptographyClient method a CMK flow uses. Run by tests/emulator/sdk_node.py,
// which starts the emulator and passes EMU_PORT, EMU_ADMIN_PORT and
// NODE_EXTRA_CA_CERTS (the emulator's CA). Prints one line per call, PASS or
// FAIL, and exits 1 if any failed.
import crypto from "node:crypto";
import dns from "node:dns";
import fs from "node:fs";
import http from "node:http";

import { ClientSecretCredential } from "@azure/identity";
import { CryptographyClient, KeyClient } from "@azure/keyvault-keys";

// *.localhost to loopback inside this process (as emu_fixture.py does for Python)
const realLookup = dns.lookup;
dns.lookup = (host, options, cb) => {
  if (typeof options === "function") [cb, options] = [options, {}];
  if (typeof options === "number") options = { family: options };
  if (host === "localhost" || host.endsWith(".localhost")) {
    const a = { address: "127.0.0.1", family: 4 };
    return process.nextTick(() => (options.all ? cb(null, [a]) : cb(null, a.address, a.family)));
  }
  return realLookup(host, options, cb);
};

const port = process.env.EMU_PORT, adminPort = process.env.EMU_ADMIN_PORT;
const vaultUrl = `https://dev.vault.localhost:${port}`, hsmUrl = `https://dev.managedhsm.localhost:${port}`;
const apiVersions = new Set();
const recordApiVersion = {
  position: "perCall",
  policy: {
    name: "recordApiVersion",
    sendRequest(req, next) {
      apiVersions.add(new URL(req.url).searchParams.get("api-version"));
      return next(req);
    },
  },
};
const options = { additionalPolicies: [recordApiVersion] };
const credential = new ClientSecretCredential("dev-tenant", "dev-client", "dev-secret", {
  authorityHost: `https://localhost:${port}`,
  disableInstanceDiscovery: true,
});
const keys = new KeyClient(vaultUrl, credential, options);
const hsm = new KeyClient(hsmUrl, credential, options);
const crypt = (keyOrId) => new CryptographyClient(keyOrId, credential, options);

const results = [];
async function call(name, fn) {
  try {
    const detail = await fn();
    results.push([name, true]);
    console.log(`PASS ${name}${detail ? ": " + detail : ""}`);
  } catch (e) {
    results.push([name, false]);
    console.log(`FAIL ${name}: ${e.statusCode ?? ""} ${e.code ?? ""} ${e.message}`);
  }
}
function assert(cond, what) {
  if (!cond) throw new Error(`assertion failed: ${what}`);
}
// expectUnsupported: the call must be refused with 400 as the emulator documents
async function expectUnsupported(fn, inner) {
  try {
    await fn();
  } catch (e) {
    assert(e.statusCode === 400, `status ${e.statusCode}, want 400`);
    assert(JSON.stringify(e.details ?? e.message).includes(inner) || e.message.includes(inner) || e.code === "BadParameter",
      `want ${inner}, got ${e.code} ${e.message}`);
    return `400 ${e.code}: ${e.message.slice(0, 80)}`;
  }
  throw new Error("the emulator accepted an operation it documents as unsupported");
}
function admin(path, body) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port: adminPort, path, method: body ? "POST" : "GET",
      headers: { "content-type": "application/json" } }, (res) => {
      let data = "";
      res.on("data", (c) => (data += c));
      res.on("end", () => (res.statusCode === 200 ? resolve(JSON.parse(data)) : reject(new Error(data))));
    });
    req.on("error", reject);
    req.end(body ? JSON.stringify(body) : undefined);
  });
}
async function count(iter) {
  let n = 0;
  for await (const _ of iter) n++;
  return n;
}
const same = (a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;

const dek = crypto.randomBytes(32);
let rsa, rsaV1, wrappedV1;

// --- KeyClient on a vault ------------------------------------------------
await call("KeyClient.createRsaKey", async () => {
  rsa = await keys.createRsaKey("node-rsa", { keySize: 2048, keyOps: ["wrapKey", "unwrapKey", "encrypt", "decrypt"] });
  rsaV1 = rsa;
  assert(rsa.keyType === "RSA" && rsa.properties.version, "kty and version");
  return rsa.id;
});
await call("KeyClient.createKey (RSA-HSM)", async () => {
  const k = await keys.createKey("node-rsa-hsm", "RSA-HSM", { keySize: 3072 });
  assert(k.keyType === "RSA-HSM", k.keyType);
});
await call("KeyClient.getKey", async () => {
  const k = await keys.getKey("node-rsa");
  const v = await keys.getKey("node-rsa", { version: rsa.properties.version });
  assert(k.id === rsa.id && v.id === rsa.id, "same id");
});
await call("KeyClient.listPropertiesOfKeys", async () => {
  const n = await count(keys.listPropertiesOfKeys());
  assert(n === 2, `2 keys, got ${n}`);
});
await call("KeyClient.getCryptographyClient", async () => {
  const c = keys.getCryptographyClient("node-rsa", { keyVersion: rsa.properties.version });
  assert(c.keyID === rsa.id, c.keyID);
});
for (const alg of ["RSA-OAEP", "RSA-OAEP-256", "RSA1_5"]) {
  await call(`CryptographyClient.wrapKey + unwrapKey (${alg})`, async () => {
    const c = crypt(rsa.id);
    const w = await c.wrapKey(alg, dek);
    if (alg === "RSA-OAEP-256") wrappedV1 = w.result;
    const u = await c.unwrapKey(alg, w.result);
    assert(same(u.result, dek), "the DEK comes back");
  });
}
await call("CryptographyClient.encrypt + decrypt (RSA-OAEP-256)", async () => {
  const c = crypt(rsa.id);
  const e = await c.encrypt({ algorithm: "RSA-OAEP-256", plaintext: dek });
  const d = await c.decrypt({ algorithm: "RSA-OAEP-256", ciphertext: e.result });
  assert(same(d.result, dek), "the plaintext comes back");
});
await call("KeyClient.rotateKey", async () => {
  rsa = await keys.rotateKey("node-rsa");
  assert(rsa.properties.version !== rsaV1.properties.version, "a new version");
});
await call("KeyClient.listPropertiesOfKeyVersions", async () => {
  const n = await count(keys.listPropertiesOfKeyVersions("node-rsa"));
  assert(n === 2, `2 versions, got ${n}`);
});
await call("CryptographyClient.unwrapKey (the pre-rotation version)", async () => {
  const u = await crypt(rsaV1.id).unwrapKey("RSA-OAEP-256", wrappedV1);
  assert(same(u.result, dek), "old wraps still unwrap");
});
await call("KeyClient.updateKeyProperties (disable, tags)", async () => {
  const p = await keys.updateKeyProperties("node-rsa", rsaV1.properties.version, { enabled: false, tags: { owner: "cmk" } });
  assert(p.properties.enabled === false && p.properties.tags.owner === "cmk", "disabled and tagged");
  try {
    await crypt(rsaV1.id).unwrapKey("RSA-OAEP-256", wrappedV1);
    throw new Error("a disabled version unwrapped");
  } catch (e) {
    assert(e.statusCode === 403, `403 on a disabled version, got ${e.statusCode}`);
  }
  await keys.updateKeyProperties("node-rsa", rsaV1.properties.version, { enabled: true });
});
await call("KeyClient.getKeyRotationPolicy (default)", async () => {
  const p = await keys.getKeyRotationPolicy("node-rsa");
  assert(p.lifetimeActions.length === 1 && p.lifetimeActions[0].action === "Notify" &&
    p.lifetimeActions[0].timeBeforeExpiry === "P30D", JSON.stringify(p));
});
await call("KeyClient.updateKeyRotationPolicy (invalid: rotate after 1 day)", async () => {
  try {
    await keys.updateKeyRotationPolicy("node-rsa", { lifetimeActions: [{ action: "Rotate", timeAfterCreate: "P1D" }] });
  } catch (e) {
    assert(e.statusCode === 400, `400, got ${e.statusCode}`);
    return `400: ${e.message.slice(0, 70)}`;
  }
  throw new Error("a 1-day rotation was accepted");
});
await call("KeyClient.updateKeyRotationPolicy", async () => {
  const p = await keys.updateKeyRotationPolicy("node-rsa", {
    lifetimeActions: [{ action: "Rotate", timeAfterCreate: "P90D" }, { action: "Notify", timeBeforeExpiry: "P30D" }],
    expiresIn: "P180D",
  });
  assert(p.expiresIn === "P180D" && p.lifetimeActions.length === 2 && p.createdOn instanceof Date, JSON.stringify(p));
});
await call("KeyClient.getKeyRotationPolicy", async () => {
  const p = await keys.getKeyRotationPolicy("node-rsa");
  const rotate = p.lifetimeActions.find((a) => a.action === "Rotate");
  assert(rotate && rotate.timeAfterCreate === "P90D" && p.expiresIn === "P180D", JSON.stringify(p));
});
await call("rotation policy carried out (clock +91 days, then listPropertiesOfKeyVersions)", async () => {
  await admin("/admin/clock", { advance_s: 91 * 86400 });
  const versions = [];
  for await (const p of keys.listPropertiesOfKeyVersions("node-rsa")) versions.push(p);
  assert(versions.length === 3, `3 versions, got ${versions.length}`);
  const latest = await keys.getKey("node-rsa");
  assert(latest.properties.expiresOn - latest.properties.createdOn === 180 * 86400 * 1000, "expiry from the policy");
  return `new version ${latest.properties.version}`;
});
let backup;
await call("KeyClient.backupKey", async () => {
  backup = await keys.backupKey("node-rsa");
  assert(backup instanceof Uint8Array && backup.length > 100, "a blob");
});
await call("KeyClient.restoreKeyBackup (over the existing key: 409)", async () => {
  try {
    await keys.restoreKeyBackup(backup);
  } catch (e) {
    assert(e.statusCode === 409, `409, got ${e.statusCode}`);
    return "409 Conflict";
  }
  throw new Error("restored over an existing key");
});
await call("KeyClient.beginDeleteKey", async () => {
  const poller = await keys.beginDeleteKey("node-rsa");
  const d = await poller.pollUntilDone();
  assert(d.properties.recoveryId && d.properties.scheduledPurgeDate, "a DeletedKey");
});
await call("KeyClient.getDeletedKey", async () => {
  const d = await keys.getDeletedKey("node-rsa");
  assert(d.properties.recoveryLevel === "Recoverable+Purgeable", d.properties.recoveryLevel);
});
await call("KeyClient.listDeletedKeys", async () => {
  const n = await count(keys.listDeletedKeys());
  assert(n === 1, `1 deleted key, got ${n}`);
});
await call("KeyClient.beginRecoverDeletedKey", async () => {
  const poller = await keys.beginRecoverDeletedKey("node-rsa");
  const k = await poller.pollUntilDone();
  assert(k.name === "node-rsa", k.name);
});
await call("KeyClient.purgeDeletedKey", async () => {
  await (await keys.beginDeleteKey("node-rsa")).pollUntilDone();
  await keys.purgeDeletedKey("node-rsa");
  try {
    await keys.getDeletedKey("node-rsa");
    throw new Error("still there after purge");
  } catch (e) {
    assert(e.statusCode === 404, `404, got ${e.statusCode}`);
  }
});
await call("KeyClient.restoreKeyBackup", async () => {
  const k = await keys.restoreKeyBackup(backup);
  assert(k.name === "node-rsa", k.name);
  const u = await crypt(rsaV1.id).unwrapKey("RSA-OAEP-256", wrappedV1);
  assert(same(u.result, dek), "the restored key unwraps what the original wrapped");
  const p = await keys.getKeyRotationPolicy("node-rsa");
  assert(p.expiresIn === "P180D", "the policy came back with it");
});
await call("KeyClient.importKey (RSA, BYOK)", async () => {
  const { privateKey, publicKey } = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 });
  const jwk = privateKey.export({ format: "jwk" });
  const outside = crypto.publicEncrypt({ key: publicKey, padding: crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha256" }, dek);
  const b = (s) => Buffer.from(s, "base64url");
  const k = await keys.importKey("node-byok", {
    kty: "RSA", n: b(jwk.n), e: b(jwk.e), d: b(jwk.d), p: b(jwk.p), q: b(jwk.q), dp: b(jwk.dp), dq: b(jwk.dq), qi: b(jwk.qi),
    keyOps: ["wrapKey", "unwrapKey"],
  });
  const u = await crypt(k.id).unwrapKey("RSA-OAEP-256", outside);
  assert(same(u.result, dek), "unwraps what was wrapped outside");
});

// --- KeyClient on a Managed HSM --------------------------------------------
let aes;
await call("KeyClient.createOctKey (Managed HSM)", async () => {
  aes = await hsm.createOctKey("node-aes", { keySize: 256, hsm: true });
  assert(aes.keyType === "oct-HSM", aes.keyType);
});
for (const alg of ["A256KW", "CKM_AES_KEY_WRAP", "CKM_AES_KEY_WRAP_PAD"]) {
  await call(`CryptographyClient.wrapKey + unwrapKey (${alg})`, async () => {
    const c = crypt(aes.id);
    const w = await c.wrapKey(alg, dek);
    const u = await c.unwrapKey(alg, w.result);
    assert(same(u.result, dek), "the DEK comes back");
  });
}
await call("CryptographyClient.encrypt + decrypt (A256GCM)", async () => {
  const c = crypt(aes.id);
  const e = await c.encrypt({ algorithm: "A256GCM", plaintext: dek, additionalAuthenticatedData: Buffer.from("aad") });
  const d = await c.decrypt({ algorithm: "A256GCM", ciphertext: e.result, iv: e.iv, authenticationTag: e.authenticationTag,
    additionalAuthenticatedData: Buffer.from("aad") });
  assert(same(d.result, dek), "the plaintext comes back");
});
await call("KeyClient.importKey (oct-HSM, Managed HSM)", async () => {
  const k = crypto.randomBytes(32);
  const imported = await hsm.importKey("node-aes-byok", { kty: "oct-HSM", k, keyOps: ["wrapKey", "unwrapKey"] });
  const cipher = crypto.createCipheriv("id-aes256-wrap", k, Buffer.from("A6A6A6A6A6A6A6A6", "hex"));
  const outside = Buffer.concat([cipher.update(dek), cipher.final()]);
  const u = await crypt(imported.id).unwrapKey("A256KW", outside);
  assert(same(u.result, dek), "unwraps what was wrapped outside");
});
await call("KeyClient.getRandomBytes (Managed HSM)", async () => {
  const a = await hsm.getRandomBytes(32), b = await hsm.getRandomBytes(32);
  assert(a.length === 32 && !same(a, b), "32 fresh bytes");
  try {
    await hsm.getRandomBytes(129);
    throw new Error("129 bytes were served");
  } catch (e) {
    assert(e.statusCode === 400, `400 over 128, got ${e.statusCode}`);
  }
});

// --- out of scope: answered 400 as documented in docs/emulator.md ----------
await call("KeyClient.createEcKey (unsupported)", () => expectUnsupported(() => keys.createEcKey("node-ec"), "KeyTypeNotSupported"));
await call("CryptographyClient.sign (unsupported)", () =>
  expectUnsupported(() => crypt(`${vaultUrl}/keys/node-rsa-hsm`).sign("RS256", crypto.createHash("sha256").update("x").digest()), "OperationNotSupported"));
await call("CryptographyClient.verify (unsupported)", () =>
  expectUnsupported(() => crypt(`${vaultUrl}/keys/node-rsa-hsm`).verify("RS256", Buffer.alloc(32), Buffer.alloc(256)), "OperationNotSupported"));
await call("KeyClient.releaseKey (unsupported)", () =>
  expectUnsupported(() => keys.releaseKey("node-rsa", "attestation-token"), "OperationNotSupported"));
await call("KeyClient.getKeyAttestation (unsupported)", () =>
  expectUnsupported(() => hsm.getKeyAttestation("node-aes"), "OperationNotSupported"));

// no serviceVersion was given, so what the SDK sent is its default: one api-version for every call
const version = (pkg) => JSON.parse(fs.readFileSync(`node_modules/@azure/${pkg}/package.json`)).version;
const failed = results.filter(([, ok]) => !ok).length + (apiVersions.size === 1 ? 0 : 1);
console.log(`@azure/keyvault-keys ${version("keyvault-keys")}, @azure/identity ${version("identity")}, ` +
  `Node.js ${process.version}; api-version sent (the SDK's default): ${[...apiVersions].join(", ")}`);
console.log(`${results.length - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
