"""The official Python CloudEvents SDK against a running intake: structured and binary mode as
the SDK writes them, each read back as a structured CloudEvent through the SDK's own parser,
and a replay across modes. Usage: python_sdk.py BASE_URL TOKEN"""
import http.client
import json
import sys
import urllib.parse
import urllib.request

from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent, from_http

base, token = sys.argv[1], sys.argv[2]


def post(headers, body):
    # http.client sends the SDK's headers as they are (urllib would add a form Content-Type to a
    # binary-mode event, which has none).
    url = urllib.parse.urlsplit(base)
    connection = http.client.HTTPConnection(url.hostname, url.port)
    connection.request(
        "POST", "/v1/events", body=body, headers={**headers, "Authorization": f"Bearer {token}"}
    )
    response = connection.getresponse()
    answer = json.loads(response.read())
    connection.close()
    return response.status, answer


def read_back(event_id):
    request = urllib.request.Request(
        f"{base}/v1/events/{event_id}",
        headers={"Authorization": f"Bearer {token}", "Accept": "application/cloudevents+json"},
    )
    with urllib.request.urlopen(request) as response:
        return from_http(dict(response.headers), response.read())


def check(sent, back):
    for name in ("id", "source", "type", "subject", "pyext"):
        assert back[name] == sent[name], (name, back[name], sent[name])
    assert back.data == sent.data, (back.data, sent.data)
    assert back["recordedtime"], back


attributes = {
    "type": "com.example.python.structured",
    "source": "https://python.example/sdk",
    "id": "py-1",
    "time": "2025-12-22T10:30:00Z",
    "subject": "orders/1",
    "pyext": "structured",
}
structured = CloudEvent(attributes, {"n": 1, "plan": "pro"})
headers, body = to_structured(structured)
status, answer = post(headers, body)
assert status == 200 and answer["deduplicated"] is False, (status, answer)
check(structured, read_back(answer["event_id"]))

binary = CloudEvent({**attributes, "id": "py-2", "pyext": "binary"}, {"n": 2})
headers, body = to_binary(binary)
status, answer = post(headers, body)
assert status == 200 and answer["deduplicated"] is False, (status, answer)
check(binary, read_back(answer["event_id"]))

# The same event again, in the other mode: a replay of the stored one.
headers, body = to_structured(binary)
status, again = post(headers, body)
assert status == 200 and again["deduplicated"] is True and again["event_id"] == answer["event_id"], again
print("python sdk: structured, binary, a replay across modes: ok")
