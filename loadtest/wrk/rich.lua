-- Requests for the held-out corpus (loadtest/scripts/*.star but config60):
-- seven params, among them an array (tags) and a dict (prefs, with a nested
-- dict). The user id differs on every request, so no result cache can
-- answer, unless FIXED=1 sends the same request every time. BIG=1 adds a
-- catalog of 64 entries (bigparams.star). CACHED=false as in varying.lua.
local next_id = 0
function setup(thread)
  next_id = next_id + 1
  thread:set("id", next_id)
end

local cached = os.getenv("CACHED") == "false" and ',"cached":false' or ''
local fixed = os.getenv("FIXED") == "1"
local catalog = ''
if os.getenv("BIG") == "1" then
  local cats = {"books", "games", "music", "tools"}
  local tags = {"news", "sport", "music", "tech", "food", "travel", "kids", "art"}
  local entries = {}
  for i = 1, 64 do
    entries[i] = string.format(
      '{"id":"item-%d","price":%d,"score":%d,"cat":"%s","tags":["%s","%s"]}',
      i, (i * 37) % 120, (i * 53) % 100, cats[i % 4 + 1], tags[i % 8 + 1], tags[(i * 3) % 8 + 1])
  end
  catalog = ',"catalog":[' .. table.concat(entries, ",") .. ']'
end

local counter = 0
request = function()
  counter = counter + 1
  local n = fixed and 1 or id * 1000000000 + counter
  local body = string.format(
    '{"meta":{"platform":"iphone","version":120,"device_id":"d%d"},' ..
    '"params":{"user_id":"u%d","score":%d,"platform":"iphone","version_code":%d,' ..
    '"region":"eu","tags":["news","sport","music","tech","food","travel"],' ..
    '"prefs":{"lang":"en","dark":true,"budget":60,"email":false,"notify":{"email":true,"push":false}}%s}%s}',
    n, n, n % 100, 100 + n % 80, catalog, cached)
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
