-- A forged-report storm against one version: SECRET and CODE_ID from the
-- environment. DEVICES=one sends every report as one device (the storm from
-- one source); DEVICES=many gives every report a new device id (sources
-- never served the version).
local secret = os.getenv("SECRET")
local code_id = os.getenv("CODE_ID")
local many = os.getenv("DEVICES") == "many"
local counter = 0

request = function()
  counter = counter + 1
  local device = many and string.format("forged-%d-%d", math.random(1, 2147483647), counter) or "attacker"
  local body = string.format(
    '{"code_id":"%s","device_id":"%s","message":"NullPointerException at %d"}',
    code_id, device, counter)
  return wrk.format("POST", nil, {["Content-Type"] = "application/json", ["Secret"] = secret}, body)
end
