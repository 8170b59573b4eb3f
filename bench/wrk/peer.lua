-- The four scenarios of bench/peer_bench.py, for one server, in one wrk script.
--
--   wrk -t2 -c8 -d15s --latency -H "Authorization: Bearer ..." -s bench/wrk/peer.lua URL \
--       -- SCENARIO COLLECTION FIRST_ID LAST_ID SEED [LIST_QUERY]
--
-- SCENARIO is list, get, create or update; COLLECTION the path of the records
-- (/api/v1/customers on Loom, /items/customers on Directus); FIRST_ID..LAST_ID the ids of
-- the loaded rows, which get and update pick from at random; SEED makes the random ids
-- the same sequence on both servers; LIST_QUERY the list's query string, which differs
-- between the two APIs only in how a filter is spelled. The bodies are the same JSON for
-- both servers. At the end the script prints one line, "PEER_RESULT {json}", with the
-- counts and latency percentiles (microseconds) that peer_bench.py reads.

local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("thread_number", thread_count)
end

local scenario, collection, first_id, last_id, list_path, write_headers
local regions = {"East", "West", "North", "South", "Central"}
local levels = {"A", "B", "C"}

function init(args)
  scenario = args[1]
  collection = args[2]
  first_id = tonumber(args[3])
  last_id = tonumber(args[4])
  math.randomseed(tonumber(args[5]) * 100 + (thread_number or 0))
  list_path = collection .. "?" .. (args[6] or "")
  write_headers = {}
  for name, value in pairs(wrk.headers) do write_headers[name] = value end
  write_headers["Content-Type"] = "application/json"
  if scenario ~= "list" and scenario ~= "get" and scenario ~= "create" and scenario ~= "update" then
    error("unknown scenario " .. tostring(scenario))
  end
end

local function random_id()
  return math.random(first_id, last_id)
end

request = function()
  if scenario == "list" then
    return wrk.format("GET", list_path)
  elseif scenario == "get" then
    return wrk.format("GET", collection .. "/" .. random_id())
  elseif scenario == "create" then
    local n = math.random(1, 999999)
    local body = string.format(
      '{"name":"Load %d","phone":"+1-555-%07d","email":"load%d@example.com","level":"%s",' ..
      '"credit_limit":%d.50,"region":"%s","owner_id":%d,"created_on":"2024-06-01T12:00:00"}',
      n, n, n, levels[math.random(1, 3)], math.random(0, 99999), regions[math.random(1, 5)],
      math.random(1, 100))
    return wrk.format("POST", collection, write_headers, body)
  else
    local body = string.format('{"credit_limit":%d.25,"level":"%s"}', math.random(0, 99999),
                               levels[math.random(1, 3)])
    return wrk.format("PATCH", collection .. "/" .. random_id(), write_headers, body)
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'PEER_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"status_errors":%d,"timeouts":%d,"latency_us":{"min":%d,"mean":%.1f,' ..
    '"stdev":%.1f,"max":%d,"p50":%d,"p75":%d,"p90":%d,"p99":%d,"p999":%d}}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.stdev, latency.max, latency:percentile(50), latency:percentile(75),
    latency:percentile(90), latency:percentile(99), latency:percentile(99.9)))
end
