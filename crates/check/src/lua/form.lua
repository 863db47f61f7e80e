-- oauthv2info: hands an application/x-www-form-urlencoded request body to
-- the Wasm filter, for policies that read request.formparam.*. A Wasm filter
-- in Envoy cannot hold the request headers while it reads the body, so this
-- filter (before it) reads the body first, when its Content-Length is at
-- most FORM_BODY_LIMIT bytes, and hands it over as dynamic metadata
-- oauthv2info:form_body. A body without a Content-Length, or a larger one,
-- is not read: the form parameters are then unset, and the filter logs why
-- (oauthv2info:form_body_skipped). The body reaches the upstream unchanged.
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
