-- Copies the variables the Wasm filter published through the Lua bridge
-- into dynamic metadata. The filter writes them as one filter-state entry,
-- wasm.oauthv2info.metadata, of netstrings ("<length>:<bytes>,"): the
-- namespace, then the name and value of each variable. One key per
-- variable, string values. Reads nothing a client sent; does nothing when
-- the entry is absent. The request-path copy marks the stream
-- (oauthv2info:bridged), so that the response-path copy, for fault replies,
-- does not do it again.
local function copy_metadata(info, on_response)
  local metadata = info:dynamicMetadata()
  if on_response then
    local own = metadata:get("oauthv2info")
    if own ~= nil and own["bridged"] ~= nil then
      return
    end
  end
  local blob = info:filterState():get("wasm.oauthv2info.metadata")
  if blob == nil or blob == "" then
    return
  end
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
  if not on_response then
    metadata:set("oauthv2info", "bridged", "true")
  end
end
