-- After the Wasm filter, on the request path: the variables of a request
-- that goes on to the upstream.
function envoy_on_request(handle)
  copy_metadata(handle:streamInfo(), false)
end
