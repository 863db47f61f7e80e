-- wrk script: one GET per request, rotating round-robin through a file of
-- access tokens (one per line), so that every token is used in turn.
--   wrk -s bench/rotate.lua URL -- <tokens file> [get|set|bearer[:PATH]] [first index]
-- With "set", each request also carries &dept=<n> (SetOAuthV2Info, setup 7);
-- with "bearer", the token is in "Authorization: Bearer <token>" of a GET
-- /get instead of the query (VerifyAccessToken, setup 2v); "bearer:PATH"
-- GETs PATH instead (setup 2p, under its proxy's base path).
-- The rotation starts at the given index (0-based, default 0), so that
-- successive short runs can continue through a long list.
-- The requests are built once in init(), so wrk spends no time per request
-- formatting them.
local requests = {}
local count = 0
local next_index = 0

function init(args)
  local file = args[1]
  local with_dept = args[2] == "set"
  local mode = args[2] or "get"
  local bearer = mode == "bearer" or mode:sub(1, 7) == "bearer:"
  local bearer_path = mode:sub(8)
  if bearer_path == "" then
    bearer_path = "/get"
  end
  for token in io.lines(file) do
    count = count + 1
    if bearer then
      requests[count] = wrk.format("GET", bearer_path, {["Authorization"] = "Bearer " .. token})
    else
      local path = "/get?access_token=" .. token
      if with_dept then
        path = path .. "&dept=d" .. (count % 100)
      end
      requests[count] = wrk.format("GET", path)
    end
  end
  if count == 0 then
    error("no tokens in " .. tostring(file))
  end
  next_index = (tonumber(args[3] or "0") or 0) % count
end

function request()
  next_index = next_index % count + 1
  return requests[next_index]
end
