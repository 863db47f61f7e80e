-- After the Wasm filter, on the request path: the variables of requests
-- that go on to the upstream.
function envoy_on_request(handle)
  copy_metadata(handle:streamInfo(), false)
end
