-- Every request carries params no earlier request had (a per-thread id and a
-- counter), so no result cache can answer.
local threads = {}
local next_id = 0

function setup(thread)
  next_id = next_id + 1
  thread:set("id", next_id)
  table.insert(threads, thread)
end

local counter = 0

request = function()
  counter = counter + 1
  local n = id * 1000000000 + counter
  local body = string.format(
    '{"meta":{"platform":"iphone","version":120,"device_id":"d%d"},' ..
    '"params":{"score":%d,"platform":"iphone","version_code":%d,"seq":%d}}',
    n, counter % 100, 100 + counter % 80, n)
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
