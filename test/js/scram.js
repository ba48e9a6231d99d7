// MQTT.js under Node.js for TestNodeMQTTjsSCRAM (test/enhauth_test.go): MQTT 5 enhanced
// authentication with SCRAM-SHA-256, the client's side written here on Node's crypto.
//
//   node scram.js URL USER PASSWORD TOPIC
//     connects with Authentication Method SCRAM-SHA-256, answers the broker's AUTH, checks the
//     server signature in CONNACK, then subscribes to TOPIC and publishes one message to it.
//
// It prints one JSON line on stdout, {"connected": bool, "serverVerified": bool, "received":
// "...", "reasonCode": n, "error": "..."}, and exits 0 unless it could not even print that.
"use strict";
const crypto = require("crypto");
const mqtt = require("mqtt");

const [url, user, password, topic] = process.argv.slice(2);
const out = { connected: false, serverVerified: false, received: null, reasonCode: null, error: null };
let done = false;

function finish(err) {
  if (done) return;
  done = true;
  if (err) {
    out.error = String(err && err.message ? err.message : err);
    if (err && err.code !== undefined) out.reasonCode = err.code;
  }
  process.stdout.write(JSON.stringify(out) + "\n");
  client.end(false, {}, () => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}

if (!url || !user || !password || !topic) {
  process.stderr.write("usage: scram.js URL USER PASSWORD TOPIC\n");
  process.exit(2);
}
setTimeout(() => finish(new Error("timed out after 15 s")), 15000).unref();

const hmac = (key, msg) => crypto.createHmac("sha256", key).update(msg).digest();
const nonce = crypto.randomBytes(18).toString("base64");
const clientFirstBare = "n=" + user.replace(/=/g, "=3D").replace(/,/g, "=2C") + ",r=" + nonce;
let serverSignature = null;

const client = mqtt.connect(url, {
  protocolVersion: 5,
  clean: true,
  reconnectPeriod: 0,
  properties: { authenticationMethod: "SCRAM-SHA-256", authenticationData: Buffer.from("n,," + clientFirstBare) },
});

// The broker's AUTH 0x18 carries server-first-message: r=nonce,s=salt,i=iterations.
client.handleAuth = (packet, callback) => {
  const serverFirst = packet.properties.authenticationData.toString();
  const f = Object.fromEntries(serverFirst.split(",").map((kv) => [kv[0], kv.slice(2)]));
  if (!f.r || !f.r.startsWith(nonce)) return callback(new Error("server nonce does not extend ours: " + serverFirst));
  const salted = crypto.pbkdf2Sync(password, Buffer.from(f.s, "base64"), Number(f.i), 32, "sha256");
  const clientKey = hmac(salted, "Client Key");
  const storedKey = crypto.createHash("sha256").update(clientKey).digest();
  const withoutProof = "c=biws,r=" + f.r;
  const authMessage = clientFirstBare + "," + serverFirst + "," + withoutProof;
  const signature = hmac(storedKey, authMessage);
  const proof = Buffer.from(clientKey.map((b, i) => b ^ signature[i]));
  serverSignature = hmac(hmac(salted, "Server Key"), authMessage).toString("base64");
  callback(null, {
    cmd: "auth",
    reasonCode: 0x18,
    properties: { authenticationMethod: "SCRAM-SHA-256", authenticationData: Buffer.from(withoutProof + ",p=" + proof.toString("base64")) },
  });
};

client.on("connect", (connack) => {
  out.connected = true;
  out.reasonCode = connack.reasonCode;
  const data = connack.properties && connack.properties.authenticationData;
  out.serverVerified = serverSignature !== null && data !== undefined && data.toString() === "v=" + serverSignature;
  client.subscribe(topic, { qos: 1 }, (err) => {
    if (err) return finish(err);
    client.publish(topic, "via SCRAM", { qos: 1 });
  });
});
client.on("message", (_t, payload) => {
  out.received = payload.toString();
  finish();
});
client.on("error", finish);
client.on("close", () => finish(new Error("connection closed")));
