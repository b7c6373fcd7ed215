-- Every request carries params no earlier request had (a per-thread id and a
-- counter), so no result cache can answer. With CACHED=false in the
-- environment, every request says `"cached": false`, as the original
-- service's client library does on every fetch.
local threads = {}
local next_id = 0

function setup(thread)
  next_id = next_id + 1
  thread:set("id", next_id)
  table.insert(threads, thread)
end

local counter = 0
local cached = os.getenv("CACHED") == "false" and ',"cached":false' or ''

request = function()
  counter = counter + 1
  local n = id * 1000000000 + counter
  local body = string.format(
    '{"meta":{"platform":"iphone","version":120,"device_id":"d%d"},' ..
    '"params":{"score":%d,"platform":"iphone","version_code":%d,"seq":%d}%s}',
    n, counter % 100, 100 + counter % 80, n, cached)
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
