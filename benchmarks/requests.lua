-- wrk script: send the pre-built HTTP requests of a file (as written by
-- benchmarks/slow_clients.py: whole requests with a Content-Length, one after the
-- other) in turn, and print the run's counts and latency percentiles (microseconds)
-- as one JSON line at the end.
--     wrk -t1 -c16 -d5s -s benchmarks/requests.lua http://127.0.0.1:PORT -- FILE

local requests = {}
local next_request = 0

function init(args)
  local file = assert(io.open(args[1], "rb"))
  local data = file:read("*a")
  file:close()
  local pos = 1
  while pos <= #data do
    local head_end = assert(data:find("\r\n\r\n", pos, true), "a request without a blank line")
    local length = tonumber(data:sub(pos, head_end):match("Content%-Length: (%d+)"))
    local stop = head_end + 3 + length
    requests[#requests + 1] = data:sub(pos, stop)
    pos = stop + 1
  end
end

function request()
  next_request = next_request % #requests + 1
  return requests[next_request]
end

function done(summary, latency, _)
  local e = summary.errors
  -- The slowest tenth in detail (percentiles 90.0 to 100.0, every 0.1), so that the
  -- percentiles of several runs taken together can be worked out (benchmarks/wrk.py).
  local tail = {}
  for k = 0, 100 do
    tail[#tail + 1] = string.format("%d", latency:percentile(90 + k / 10))
  end
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d, '
    .. '"p50_us": %d, "p99_us": %d, "max_us": %d, "tail_us": [%s]}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max, table.concat(tail, ", ")))
end
