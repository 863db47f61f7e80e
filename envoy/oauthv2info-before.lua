-- oauthv2info, Lua filter BEFORE the Wasm filter. Optional; it does two things.
--
-- 1. request.formparam.*: a Wasm filter in Envoy cannot hold the request
--    headers while it reads the body, so this script reads an
--    application/x-www-form-urlencoded body first (only when its
--    Content-Length is at most FORM_BODY_LIMIT bytes) and hands it to the
--    filter as dynamic metadata oauthv2info:form_body. Bodies without a
--    Content-Length, or larger, are not read; the filter then treats the
--    form parameters as absent and logs why (oauthv2info:form_body_skipped).
-- 2. Fault variables in dynamic metadata: when the filter ends a request with
--    a fault, the reply skips the filters after it, so oauthv2info-after.lua
--    never runs; this script's response hook copies the published variables
--    (fault.name, oauthV2.<policy>.failed, ...) into dynamic metadata for the
--    access log.
local FORM_BODY_LIMIT = 65536

function envoy_on_request(handle)
  local content_type = handle:headers():get("content-type")
  if content_type == nil
      or not string.find(string.lower(content_type), "^%s*application/x%-www%-form%-urlencoded") then
    return
  end
  local metadata = handle:streamInfo():dynamicMetadata()
  local length = tonumber(handle:headers():get("content-length") or "")
  if length == nil then
    metadata:set("oauthv2info", "form_body_skipped", "no Content-Length")
    return
  end
  if length > FORM_BODY_LIMIT then
    metadata:set("oauthv2info", "form_body_skipped", "larger than " .. FORM_BODY_LIMIT .. " bytes")
    return
  end
  -- body() waits for the whole body: objects taken before it are stale.
  local body = handle:body()
  local text = ""
  if body ~= nil then
    text = body:getBytes(0, body:length())
  end
  handle:streamInfo():dynamicMetadata():set("oauthv2info", "form_body", text)
end

function envoy_on_response(handle)
  local info = handle:streamInfo()
  local blob = info:filterState():get("wasm.oauthv2info.metadata")
  if blob == nil or blob == "" then
    return
  end
  local pos, size = 1, #blob
  local namespace, key = nil, nil
  local metadata = info:dynamicMetadata()
  while pos <= size do
    local colon = string.find(blob, ":", pos, true)
    local length = colon and tonumber(string.sub(blob, pos, colon - 1))
    if length == nil then
      return
    end
    local item = string.sub(blob, colon + 1, colon + length)
    pos = colon + length + 2
    if namespace == nil then
      namespace = item
      -- Already copied on the request path by oauthv2info-after.lua.
      if metadata:get(namespace) ~= nil then
        return
      end
    elseif key == nil then
      key = item
    else
      metadata:set(namespace, key, item)
      key = nil
    end
  end
end
