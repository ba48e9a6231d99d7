// MQTT.js under Node.js for TestNodeMQTTjsPersistentQoS2 (test/node_test.go): a persistent
// session (clean: false) over ws://, at QoS 2.
//
//   node persistent_session.js subscribe URL CLIENT_ID FILTER
//     connects, subscribes to FILTER at QoS 2 and disconnects cleanly.
//   node persistent_session.js receive URL CLIENT_ID COUNT
//     connects and collects messages until COUNT have arrived, then waits a little longer so that
//     a duplicate would show, and disconnects.
//
// Either way it prints one JSON line on stdout, {"sessionPresent": ..., "granted": [...],
// "messages": [{topic, payload, qos, dup, retain}], "error": "..."}, and exits 0 unless it could
// not even print that. The Go test judges the result.
"use strict";
const mqtt = require("mqtt");

const [mode, url, clientId, arg] = process.argv.slice(2);
const out = { sessionPresent: null, granted: null, messages: [], error: null };
let done = false;

function finish(err) {
  if (done) return;
  done = true;
  if (err) out.error = String(err && err.message ? err.message : err);
  process.stdout.write(JSON.stringify(out) + "\n");
  // end(false): send DISCONNECT after in-flight acknowledgements (PUBCOMP) have gone out.
  client.end(false, {}, () => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}

if (!["subscribe", "receive"].includes(mode) || !url || !clientId || !arg) {
  process.stderr.write("usage: persistent_session.js subscribe|receive URL CLIENT_ID FILTER|COUNT\n");
  process.exit(2);
}

setTimeout(() => finish(new Error("timed out after 15 s")), 15000).unref();

const client = mqtt.connect(url, {
  clientId,
  clean: false,
  protocolVersion: 4,
  keepalive: 30,
  reconnectPeriod: 0,
  connectTimeout: 10000,
  // Subscribe only when told to: MQTT.js would otherwise re-send subscriptions on a reconnect.
  resubscribe: false,
});

client.on("error", (err) => finish(err));
client.on("close", () => finish(new Error("connection closed")));

client.on("message", (topic, payload, packet) => {
  out.messages.push({ topic, payload: payload.toString(), qos: packet.qos, dup: packet.dup, retain: packet.retain });
  if (mode === "receive" && out.messages.length === Number(arg)) {
    setTimeout(() => finish(), 500);
  }
});

client.on("connect", (connack) => {
  out.sessionPresent = connack.sessionPresent;
  if (mode === "subscribe") {
    client.subscribe(arg, { qos: 2 }, (err, granted) => {
      if (err) return finish(err);
      out.granted = granted.map((g) => g.qos);
      finish();
    });
  }
});
