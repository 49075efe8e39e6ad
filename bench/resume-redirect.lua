-- wrk script for bench/resume-redirect: GET /resume/{id} over the ids in IDS (comma-separated),
-- with the session cookie in COOKIE, counting every response that is not a 302.

local ids = {}
for id in string.gmatch(os.getenv("IDS") or "1", "[^,]+") do
  ids[#ids + 1] = id
end
local cookie = os.getenv("COOKIE") or ""
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  threads[#threads + 1] = thread
end

function init(args)
  non302 = 0
  n = id or 0
end

function request()
  n = n + 1
  local path = "/resume/" .. ids[(n % #ids) + 1]
  if cookie ~= "" then
    return wrk.format("GET", path, { ["Cookie"] = cookie })
  end
  return wrk.format("GET", path)
end

function response(status, headers, body)
  if status ~= 302 then
    non302 = non302 + 1
  end
end

function done(summary, latency, requests)
  local bad = 0
  for _, t in ipairs(threads) do
    bad = bad + t:get("non302")
  end
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout
  io.write(string.format("RESULT rps=%.0f p50_ms=%.3f p99_ms=%.3f non302=%d socket_errors=%d requests=%d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    bad + errors, errors, summary.requests))
end
