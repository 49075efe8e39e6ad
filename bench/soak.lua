-- wrk script for bench/soak: a signed-in member's mix over the directory (/), profiles
-- (/profiles/{id}) and resume links (/resume/{id}), ids from IDS (comma-separated), the
-- session cookie from COOKIE. Anything but a 200 or 302 is an error, as is a socket error.

local ids = {}
for id in string.gmatch(os.getenv("IDS") or "1", "[^,]+") do
  ids[#ids + 1] = id
end
local headers = { ["Cookie"] = os.getenv("COOKIE") or "" }
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  threads[#threads + 1] = thread
end

function init(args)
  bad = 0
  n = id or 0
end

function request()
  n = n + 1
  local id = ids[(n % #ids) + 1]
  local kind = n % 5
  local path
  if kind == 0 then
    path = "/"
  elseif kind <= 2 then
    path = "/profiles/" .. id
  else
    path = "/resume/" .. id
  end
  return wrk.format("GET", path, headers)
end

function response(status, headers, body)
  if status ~= 200 and status ~= 302 then
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local statuses = 0
  for _, t in ipairs(threads) do
    statuses = statuses + t:get("bad")
  end
  local sockets = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout
  io.write(string.format("RESULT rps=%.0f p50_ms=%.3f p99_ms=%.3f errors=%d bad_status=%d socket_errors=%d requests=%d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    statuses + sockets, statuses, sockets, summary.requests))
end
