-- oauthv2info, Lua filter AFTER the Wasm filter: the dynamic-metadata bridge.
--
-- Envoy 1.40 gives a Wasm filter no way to write dynamic metadata, so the
-- oauthv2info filter writes one filter-state entry, wasm.oauthv2info.metadata,
-- holding netstrings ("<length>:<bytes>,"): the namespace, then the name and
-- value of each published variable. This script copies them into dynamic
-- metadata, one key per variable, string values:
--   %DYNAMIC_METADATA(apigee:oauthv2accesstoken.GetTokenAttributes.scope)%
-- so that RBAC, routing, later filters and the access log can read them.
-- It reads nothing from the client and does nothing when the entry is absent.
-- (oauthv2info-before.lua does the same for requests the filter ends with a
-- fault, which never reach this filter.)
function envoy_on_request(handle)
  local info = handle:streamInfo()
  local blob = info:filterState():get("wasm.oauthv2info.metadata")
  if blob == nil or blob == "" then
    return
  end
  local metadata = info:dynamicMetadata()
  local pos, size = 1, #blob
  local namespace, key = nil, nil
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
    elseif key == nil then
      key = item
    else
      metadata:set(namespace, key, item)
      key = nil
    end
  end
end
