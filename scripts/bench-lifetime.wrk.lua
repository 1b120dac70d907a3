-- wrk script of scripts/bench-lifetime: single events (POST /v1/events), each with a random
-- UUID idempotency key, as the dev token (tenant "dev"). Prints one line at the end:
-- RESULT <requests> <duration µs> <p50 µs> <p99 µs> <non-2xx> <socket errors>
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function init(args)
  math.randomseed(os.time() * 1000 + tid * 7919 + (tonumber(args[1]) or 0))
end

local function uuid()
  return string.format("%08x-%04x-4%03x-%04x-%04x%08x",
    math.random(0, 0xffffffff), math.random(0, 0xffff), math.random(0, 0xfff),
    0x8000 + math.random(0, 0x3fff), math.random(0, 0xffff), math.random(0, 0xffffffff))
end

local headers = {
  ["Authorization"] = "Bearer test_123",
  ["Content-Type"] = "application/json",
}

function request()
  local body = '{"event_type":"order.item_added","occurred_at":"2025-12-22T10:30:00Z",'
    .. '"idempotency_key":"' .. uuid() .. '",'
    .. '"data":{"order_id":"o_1","sku":"SKU-123","quantity":2,"price":19.99}}'
  return wrk.format("POST", "/v1/events", headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), e.status,
    e.connect + e.read + e.write + e.timeout))
end
