// MQTT.js against midge over WebSocket: QoS 0, 1 and 2 and a retained message.
// Usage: node pubsub.js URL PROTOCOL_VERSION   (run by loop/mqttjs_test.go)
// Prints one JSON line with what the subscriber received; exits 1 on error.
'use strict';
const mqtt = require('mqtt');

const [url, version] = process.argv.slice(2);
const opts = { protocolVersion: Number(version), reconnectPeriod: 0, connectTimeout: 5000, clean: true };
const fail = (err) => { console.error('mqttjs:', err && err.message ? err.message : err); process.exit(1); };
setTimeout(() => fail('timed out'), 15000).unref();

function connect(id) {
  return new Promise((resolve, reject) => {
    const c = mqtt.connect(url, { ...opts, clientId: id });
    c.once('connect', () => resolve(c));
    c.once('error', reject);
  });
}

(async () => {
  const sub = await connect('js-sub-' + version);
  const pub = await connect('js-pub-' + version);
  const got = [];
  const want = 3;
  const done = new Promise((resolve) => {
    sub.on('message', (topic, payload, packet) => {
      got.push({ topic, payload: payload.toString(), qos: packet.qos, retain: packet.retain });
      if (got.length === want) resolve();
    });
  });
  await sub.subscribeAsync('js/#', { qos: 2 });
  for (const qos of [0, 1, 2]) {
    await pub.publishAsync('js/q' + qos, 'payload ' + qos + ' ' + 'x'.repeat(qos * 1000), { qos });
  }
  // Retained: published first, received by a later subscription.
  await pub.publishAsync('kept/' + version, 'retained', { qos: 1, retain: true });
  const late = await connect('js-late-' + version);
  const retained = new Promise((resolve) => late.on('message', (topic, payload, packet) =>
    resolve({ topic, payload: payload.toString(), retain: packet.retain })));
  await late.subscribeAsync('kept/' + version, { qos: 1 });
  await done;
  got.push(await retained);
  got.sort((a, b) => a.topic.localeCompare(b.topic));
  console.log(JSON.stringify(got.map((m) => ({ ...m, payload: m.payload.length > 40 ? m.payload.slice(0, 9) + '…' + m.payload.length : m.payload }))));
  await Promise.all([sub.endAsync(), pub.endAsync(), late.endAsync()]);
  process.exit(0);
})().catch(fail);
