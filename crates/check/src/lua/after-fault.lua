-- On the response path: the variables of a request the filter ended with a
-- fault reply (a local reply passes the encoders of every filter, those
-- after the one that sent it included; the request-path copy never ran).
function envoy_on_response(handle)
  copy_metadata(handle:streamInfo(), true)
end
