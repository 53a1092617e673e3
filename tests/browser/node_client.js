// MQTT.js in Node.js against mqttx over ws://, run by
// tests/integration/test_browser.py:
//
//   node node_client.js BROKER_URL TOPIC_PREFIX
//
// 1. As MQTT 5 and as MQTT 3.1.1: subscribe to PREFIX/node/v<level>, publish
//    QoS 1 to it, receive the message back, check payload and QoS.
// 2. With a paho-mqtt client in the test: subscribe to PREFIX/from-paho,
//    print {"event": "ready"}, wait for paho's message, then publish
//    "echo: <its payload>" QoS 1 to PREFIX/from-node for paho to receive.
//
// The last line printed is the result, {"event": "result", "ok", "error",
// "details"}; the exit status is 0 when ok, 1 otherwise.
"use strict";

const mqtt = require("mqtt");

const STEP_TIMEOUT_MS = 10000;

function withTimeout(promise, what) {
  let timer;
  const timeout = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer in ${STEP_TIMEOUT_MS} ms`)), STEP_TIMEOUT_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// A connected client, and a promise that rejects if the connection fails.
async function connect(brokerUrl, protocolVersion, name) {
  const client = mqtt.connect(brokerUrl, {
    protocolVersion,
    clientId: `node-${name}-${Math.random().toString(16).slice(2, 10)}`,
    clean: true,
    reconnectPeriod: 0, // a failure must be reported, not retried
    connectTimeout: STEP_TIMEOUT_MS,
  });
  const failed = new Promise((resolve, reject) => {
    client.on("error", (err) => reject(new Error(`client error: ${err.message}`)));
    client.on("close", () => reject(new Error("connection closed")));
  });
  failed.catch(() => {}); // also rejects on the final close, unobserved then
  try {
    await withTimeout(Promise.race([new Promise((resolve) => client.once("connect", resolve)), failed]), "CONNECT");
  } catch (err) {
    client.end(true);
    throw err;
  }
  return { client, failed };
}

// The next message on `topic`.
function nextMessage(client, topic) {
  return new Promise((resolve) => {
    client.on("message", (t, payload, packet) => {
      if (t === topic) resolve({ payload: payload.toString("utf8"), qos: packet.qos });
    });
  });
}

async function subscribe(client, failed, topic) {
  const granted = await withTimeout(Promise.race([client.subscribeAsync(topic, { qos: 1 }), failed]), "SUBSCRIBE");
  if (granted.length !== 1 || granted[0].qos !== 1) {
    throw new Error(`SUBACK granted ${JSON.stringify(granted)}, expected QoS 1`);
  }
}

async function roundTrip(brokerUrl, prefix, protocolVersion) {
  const topic = `${prefix}/node/v${protocolVersion}`;
  const payload = `hello from Node.js ${process.version} over MQTT level ${protocolVersion}`;
  const { client, failed } = await connect(brokerUrl, protocolVersion, `v${protocolVersion}`);
  try {
    const received = nextMessage(client, topic);
    await subscribe(client, failed, topic);
    await withTimeout(Promise.race([client.publishAsync(topic, payload, { qos: 1 }), failed]), "PUBLISH");
    const message = await withTimeout(Promise.race([received, failed]), "own message");
    if (message.payload !== payload) {
      throw new Error(`payload ${JSON.stringify(message.payload)}, expected ${JSON.stringify(payload)}`);
    }
    if (message.qos !== 1) {
      throw new Error(`delivered with QoS ${message.qos}, expected 1`);
    }
    return { protocolVersion, topic, qos: message.qos };
  } finally {
    await client.endAsync();
  }
}

async function withPaho(brokerUrl, prefix) {
  const { client, failed } = await connect(brokerUrl, 5, "interop");
  try {
    const inbound = `${prefix}/from-paho`;
    const received = nextMessage(client, inbound);
    await subscribe(client, failed, inbound);
    console.log(JSON.stringify({ event: "ready" }));
    const message = await withTimeout(Promise.race([received, failed]), "paho's message");
    const reply = `echo: ${message.payload}`;
    await withTimeout(
      Promise.race([client.publishAsync(`${prefix}/from-node`, reply, { qos: 1 }), failed]),
      "PUBLISH to paho",
    );
    return { fromPaho: message.payload, qos: message.qos, replied: reply };
  } finally {
    await client.endAsync();
  }
}

async function main() {
  const [brokerUrl, prefix] = process.argv.slice(2);
  const details = { node: process.version, runs: [] };
  try {
    if (!brokerUrl || !prefix) {
      throw new Error("usage: node node_client.js BROKER_URL TOPIC_PREFIX");
    }
    for (const version of [5, 4]) {
      try {
        details.runs.push(await roundTrip(brokerUrl, prefix, version));
      } catch (err) {
        throw new Error(`MQTT level ${version}: ${err.message}`);
      }
    }
    details.interop = await withPaho(brokerUrl, prefix);
  } catch (err) {
    console.log(JSON.stringify({ event: "result", ok: false, error: String(err.message || err), details }));
    process.exit(1);
  }
  console.log(JSON.stringify({ event: "result", ok: true, error: null, details }));
  process.exit(0);
}

main();
