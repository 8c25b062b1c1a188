-- wrk script: the requests of requests.lua, sent at a mean rate with Poisson arrivals
-- (exponential gaps from one schedule for every connection: each request goes out at
-- its scheduled time on whichever connection is free, at once when it is late).
--     wrk -t1 -c16 -d8s -s benchmarks/paced.lua http://127.0.0.1:PORT -- FILE RATE

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "requests.lua")

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } paced_timespec;
int clock_gettime(int clock_id, paced_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local ts = ffi.new("paced_timespec")

local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local load_requests = init
local mean_gap_ms
local next_at

function init(args)
  load_requests(args)
  mean_gap_ms = 1000 / assert(tonumber(args[2]), "a rate (requests a second) after the file")
  math.randomseed(1)
end

-- wrk asks before each request how many milliseconds to wait (whole ones).
function delay()
  local now = now_ms()
  next_at = (next_at or now) - math.log(1 - math.random()) * mean_gap_ms
  local wait = next_at - now
  if wait <= 0 then
    return 0
  end
  return math.floor(wait + 0.5)
end
