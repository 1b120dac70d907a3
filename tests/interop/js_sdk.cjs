// The official JavaScript CloudEvents SDK against a running intake: HTTP.structured and
// HTTP.binary as the SDK writes them, a batch of the SDK's events in batched mode, each read back
// as a structured CloudEvent through the SDK's own HTTP.toEvent. Usage: node js_sdk.cjs BASE TOKEN
const assert = require("node:assert/strict");
const { CloudEvent, HTTP, CONSTANTS } = require("cloudevents");

const [base, token] = process.argv.slice(2);

async function post(path, headers, body) {
  const response = await fetch(base + path, {
    method: "POST",
    headers: { ...headers, authorization: `Bearer ${token}` },
    body,
  });
  return { status: response.status, json: await response.json() };
}

async function readBack(id) {
  const response = await fetch(`${base}/v1/events/${id}`, {
    headers: { authorization: `Bearer ${token}`, accept: "application/cloudevents+json" },
  });
  assert.equal(response.status, 200);
  const headers = Object.fromEntries(response.headers);
  return HTTP.toEvent({ headers, body: await response.text() });
}

function check(sent, back) {
  for (const name of ["id", "source", "type", "subject", "jsext"]) {
    assert.equal(back[name], sent[name], name);
  }
  assert.deepEqual(back.data, sent.data);
  assert.ok(back.recordedtime);
}

function event(id, mode) {
  return new CloudEvent({
    type: "com.example.js.event",
    source: "https://js.example/sdk",
    id,
    time: "2025-12-22T10:30:00.000Z",
    subject: "orders/2",
    jsext: mode,
    datacontenttype: "application/json",
    data: { n: id, mode },
  });
}

(async () => {
  const structured = event("js-1", "structured");
  const sent = HTTP.structured(structured);
  let answer = await post("/v1/events", sent.headers, sent.body);
  assert.equal(answer.status, 200, JSON.stringify(answer.json));
  check(structured, await readBack(answer.json.event_id));

  const binary = event("js-2", "binary");
  const message = HTTP.binary(binary);
  answer = await post("/v1/events", message.headers, message.body);
  assert.equal(answer.status, 200, JSON.stringify(answer.json));
  check(binary, await readBack(answer.json.event_id));

  const batch = [event("js-3", "batch"), event("js-4", "batch"), structured];
  answer = await post(
    "/v1/events/batch",
    { "content-type": CONSTANTS.MIME_CE_BATCH },
    JSON.stringify(batch.map((e) => e.toJSON())),
  );
  assert.equal(answer.status, 200, JSON.stringify(answer.json));
  assert.equal(answer.json.accepted, 2, JSON.stringify(answer.json));
  assert.equal(answer.json.deduplicated, 1, "the structured event again is a replay");
  check(batch[0], await readBack(answer.json.results[0].event_id));
  console.log("js sdk: structured, binary, batched, a replay in a batch: ok");
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
