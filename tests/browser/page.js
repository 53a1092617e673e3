// MQTT.js (browser build) against mqttx over ws://, once as MQTT 5 and once
// as MQTT 3.1.1: subscribe to a topic of its own, publish QoS 1 to it, wait
// for the message to come back, check it, then POST the outcome as JSON
// ({ok, error, details}) to the report URL.
"use strict";

const STEP_TIMEOUT_MS = 10000;

function withTimeout(promise, what) {
  let timer;
  const timeout = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer in ${STEP_TIMEOUT_MS} ms`)), STEP_TIMEOUT_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// One client: connect, subscribe, publish QoS 1, receive its own message.
async function roundTrip(brokerUrl, topicPrefix, protocolVersion) {
  const topic = `${topicPrefix}/v${protocolVersion}`;
  const payload = `hello from ${navigator.userAgent} over MQTT level ${protocolVersion}`;
  const client = mqtt.connect(brokerUrl, {
    protocolVersion,
    clientId: `browser-v${protocolVersion}-${Math.random().toString(16).slice(2, 10)}`,
    clean: true,
    reconnectPeriod: 0, // a failure must be reported, not retried
    connectTimeout: STEP_TIMEOUT_MS,
  });
  try {
    const failed = new Promise((resolve, reject) => {
      client.on("error", (err) => reject(new Error(`client error: ${err.message}`)));
      client.on("close", () => reject(new Error("connection closed")));
    });
    failed.catch(() => {}); // also rejects on the final close, unobserved then
    const connack = await withTimeout(
      Promise.race([new Promise((resolve) => client.once("connect", resolve)), failed]),
      "CONNECT",
    );
    const received = new Promise((resolve) => {
      client.on("message", (t, message, packet) => {
        if (t === topic) resolve({ payload: new TextDecoder().decode(message), packet });
      });
    });
    const granted = await withTimeout(Promise.race([client.subscribeAsync(topic, { qos: 1 }), failed]), "SUBSCRIBE");
    if (granted.length !== 1 || granted[0].qos !== 1) {
      throw new Error(`SUBACK granted ${JSON.stringify(granted)}, expected QoS 1`);
    }
    const puback = await withTimeout(Promise.race([client.publishAsync(topic, payload, { qos: 1 }), failed]), "PUBLISH");
    const message = await withTimeout(Promise.race([received, failed]), "own message");
    if (message.payload !== payload) {
      throw new Error(`payload ${JSON.stringify(message.payload)}, expected ${JSON.stringify(payload)}`);
    }
    if (message.packet.qos !== 1) {
      throw new Error(`delivered with QoS ${message.packet.qos}, expected 1`);
    }
    return {
      protocolVersion,
      topic,
      payload,
      sessionPresent: connack.sessionPresent,
      pubackReasonCode: puback && puback.reasonCode !== undefined ? puback.reasonCode : null,
      qos: message.packet.qos,
    };
  } finally {
    await client.endAsync();
  }
}

async function report(url, result) {
  document.getElementById("status").textContent = JSON.stringify(result, null, 2);
  await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(result),
  });
}

async function main() {
  const query = new URLSearchParams(window.location.search);
  const reportUrl = query.get("report") || "/report";
  const details = { userAgent: navigator.userAgent, runs: [] };
  try {
    if (typeof mqtt === "undefined") {
      throw new Error("MQTT.js did not load (node_modules/mqtt/dist/mqtt.min.js)");
    }
    const brokerUrl = query.get("broker");
    const topicPrefix = query.get("topic");
    if (!brokerUrl || !topicPrefix) {
      throw new Error("the query string needs broker= and topic=");
    }
    details.broker = brokerUrl;
    for (const version of [5, 4]) {
      try {
        details.runs.push(await roundTrip(brokerUrl, topicPrefix, version));
      } catch (err) {
        throw new Error(`MQTT level ${version}: ${err.message}`);
      }
    }
    await report(reportUrl, { ok: true, error: null, details });
  } catch (err) {
    await report(reportUrl, { ok: false, error: String(err.message || err), details });
  }
}

main();
