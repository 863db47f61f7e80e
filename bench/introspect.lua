-- Setup 6 of the benchmark: Envoy's Lua filter doing what the Wasm filter
-- does, the straightforward way: on every request, httpCall the token
-- service's /oauth2/introspect with the access_token query parameter, refuse
-- inactive tokens, and set one dynamic-metadata key per string member of the
-- answer (about 20), under the names GetOAuthV2Info would use.
-- bench.py replaces @SERVICE_KEY@ when it writes the Envoy configuration.
local SERVICE_KEY = "@SERVICE_KEY@"
local NAMESPACE = "apigee"
local PREFIX = "oauthv2accesstoken.GetTokenAttributes."

local function url_decode(s)
  s = string.gsub(s, "+", " ")
  return (string.gsub(s, "%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local function url_encode(s)
  return (string.gsub(s, "[^%w%-%._~]", function(c) return string.format("%%%02X", string.byte(c)) end))
end

function envoy_on_request(handle)
  local path = handle:headers():get(":path") or ""
  local token = string.match(path, "[?&]access_token=([^&#]*)")
  if token == nil or token == "" then
    handle:respond({[":status"] = "401"}, "no access token")
    return
  end
  local headers, body = handle:httpCall("token_service", {
    [":method"] = "POST",
    [":path"] = "/oauth2/introspect",
    [":authority"] = "token-service",
    ["content-type"] = "application/x-www-form-urlencoded",
    ["authorization"] = "Bearer " .. SERVICE_KEY,
  }, "token=" .. url_encode(url_decode(token)) .. "&token_type_hint=access_token", 1000)
  if headers[":status"] ~= "200" or body == nil then
    handle:respond({[":status"] = "503"}, "token service unavailable")
    return
  end
  if not string.find(body, '"active":true', 1, true) then
    handle:respond({[":status"] = "401"}, "invalid access token")
    return
  end
  local metadata = handle:streamInfo():dynamicMetadata()
  for key, value in string.gmatch(body, '"([%w%._]+)":"([^"]*)"') do
    metadata:set(NAMESPACE, PREFIX .. key, value)
  end
end
