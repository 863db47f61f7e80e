-- Before the Wasm filter, on the response path: the variables of requests
-- the filter ended with a fault reply, which the request-path copy never
-- saw (the filters after the Wasm filter do not see a request it ends).
function envoy_on_response(handle)
  copy_metadata(handle:streamInfo(), true)
end
