// MQTT.js at protocol level 5 for test/v5clients_test.go, under Node.js and in Chromium (loaded by
// browser5.html after MQTT.js's bundle, which defines the global mqtt).
//
//   node v5_roundtrip.js URL CLIENT_ID BASE
//
// The client connects with protocolVersion 5, subscribes at QoS 1 to BASE/echo and to its own
// reply topic BASE/reply/CLIENT_ID, then
//   1. publishes to BASE/echo at QoS 1 with every message property it can set, and waits for the
//      copy the broker sends back;
//   2. sends a request to BASE/req at QoS 1 whose Response Topic is its reply topic and whose
//      Correlation Data is CLIENT_ID's own; the test answers it from Go.
// It reports one JSON object: {"connack", "granted", "puback", "echo", "reply", "error"}, where
// echo and reply are the messages received with their properties, and ends. The Go test judges it.
"use strict";

function v5RoundTrip(mqtt, url, clientId, base, report) {
  const out = { connack: null, granted: null, puback: 0, echo: null, reply: null, error: null };
  const replyTopic = base + "/reply/" + clientId;
  const correlation = "corr-" + clientId + "-✓";
  let client;
  let finished = false;
  function finish(err) {
    if (finished) return;
    finished = true;
    if (err) out.error = String(err && err.message ? err.message : err);
    report(out);
    if (client) client.end(false);
  }
  const timer = setTimeout(() => finish(new Error("timed out after 15 s")), 15000);

  // Done with the reply and both PUBACKs, which may come in either order: the broker may deliver
  // the answer to the request before the request's own PUBACK.
  function maybeDone() {
    if (out.reply !== null && out.puback === 2) {
      clearTimeout(timer);
      finish();
    }
  }

  // Properties as MQTT.js hands them over, made JSON-safe (correlationData is a Buffer).
  function received(topic, payload, packet) {
    const p = Object.assign({}, packet.properties || {});
    if (p.correlationData !== undefined) p.correlationData = p.correlationData.toString();
    return { topic, payload: payload.toString(), qos: packet.qos, retain: packet.retain, properties: p };
  }

  client = mqtt.connect(url, {
    clientId,
    protocolVersion: 5,
    clean: true,
    keepalive: 30,
    reconnectPeriod: 0,
    connectTimeout: 10000,
    // Lets the broker send later deliveries of a topic by alias; MQTT.js resolves them.
    properties: { topicAliasMaximum: 8, requestProblemInformation: true },
  });
  client.on("error", (err) => finish(err));
  client.on("close", () => finish(new Error("connection closed")));
  client.on("connect", (connack) => {
    out.connack = { sessionPresent: connack.sessionPresent, reasonCode: connack.reasonCode, properties: connack.properties || {} };
    client.subscribe([base + "/echo", replyTopic], { qos: 1 }, (err, granted) => {
      if (err) return finish(err);
      out.granted = granted.map((g) => g.qos);
      const props = {
        payloadFormatIndicator: true,
        messageExpiryInterval: 300,
        contentType: "application/json; charset=utf-8",
        responseTopic: base + "/elsewhere",
        correlationData: "echo-" + clientId,
        userProperties: { first: "1", second: ["2", "2 again"], "ünï": "cødé" },
      };
      client.publish(base + "/echo", JSON.stringify({ hello: "wörld" }), { qos: 1, properties: props }, (err) => {
        if (err) return finish(err);
        out.puback++;
      });
    });
  });
  client.on("message", (topic, payload, packet) => {
    const m = received(topic, payload, packet);
    if (topic === base + "/echo" && out.echo === null) {
      out.echo = m;
      const props = { responseTopic: replyTopic, correlationData: correlation, userProperties: { kind: "request" } };
      client.publish(base + "/req", "what time is it?", { qos: 1, properties: props }, (err) => {
        if (err) return finish(err);
        out.puback++;
        maybeDone();
      });
    } else if (topic === replyTopic) {
      out.reply = m;
      maybeDone();
    } else {
      finish(new Error("unexpected message on " + topic));
    }
  });
}

if (typeof module !== "undefined" && require.main === module) {
  const [url, clientId, base] = process.argv.slice(2);
  if (!url || !clientId || !base) {
    process.stderr.write("usage: v5_roundtrip.js URL CLIENT_ID BASE\n");
    process.exit(2);
  }
  v5RoundTrip(require("mqtt"), url, clientId, base, (out) => {
    process.stdout.write(JSON.stringify(out) + "\n");
    setTimeout(() => process.exit(0), 500).unref();
  });
}
