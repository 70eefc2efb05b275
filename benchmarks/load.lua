-- wrk script for the real-server sections (see benchmarks/server.py).
-- wrk -s load.lua URL -- MODE LIMIT
--   MODE bare      POST /bare/<thread>-<n>/lock            (a route that does nothing)
--   MODE acquire   POST /docs/<thread>-<n>/@lock           (a new grant every request)
--   MODE raw       POST /raw/<thread>-<n>/lock             (one raw-driver upsert + commit)
--   MODE hot       lock cycles on /docs/hot/@lock          (every thread fights for one resource)
--   MODE distinct  lock cycles on /docs/c<thread>/@lock    (one resource per thread)
-- A lock cycle is POST, then DELETE with the granted token; a 409 is answered by a new POST.
-- Run with as many connections as threads (-c N -t N) so a thread's state is its connection's.
-- LIMIT bounds the requests of each thread; -d bounds the time.

local counter = 1
local threads = {}

function setup(thread)
  thread:set("id", counter)
  table.insert(threads, thread)
  counter = counter + 1
end

function init(args)
  mode = args[1] or "bare"
  limit = tonumber(args[2] or "100000")
  n = 0
  s2 = 0
  s409 = 0
  s5 = 0
  other = 0
  granted = 0
  token = nil
  user = "u" .. id
  if mode == "hot" then
    cycle_path = "/docs/hot/@lock"
  else
    cycle_path = "/docs/c" .. id .. "/@lock"
  end
end

function request()
  n = n + 1
  if n > limit then
    wrk.thread:stop()
  end
  if mode == "bare" then
    return wrk.format("POST", "/bare/" .. id .. "-" .. n .. "/lock", { ["X-User"] = user }, "")
  elseif mode == "acquire" then
    return wrk.format("POST", "/docs/" .. id .. "-" .. n .. "/@lock", { ["X-User"] = user }, "")
  elseif mode == "raw" then
    return wrk.format("POST", "/raw/" .. id .. "-" .. n .. "/lock", { ["X-User"] = user }, "")
  end
  if token ~= nil then
    local held = token
    token = nil
    return wrk.format("DELETE", cycle_path, { ["X-User"] = user, ["Lock-Token"] = held }, "")
  end
  return wrk.format("POST", cycle_path, { ["X-User"] = user }, "")
end

function response(status, headers, body)
  if status >= 500 then
    s5 = s5 + 1
  elseif status == 409 then
    s409 = s409 + 1
  elseif status >= 200 and status < 300 then
    s2 = s2 + 1
  else
    other = other + 1
  end
  if (mode == "hot" or mode == "distinct") and status == 200 then
    local held = headers["Lock-Token"]
    if held ~= nil then
      token = held
      granted = granted + 1
    end
  end
end

function done(summary, latency, requests)
  local t = { s2 = 0, s409 = 0, s5 = 0, other = 0, granted = 0 }
  for _, thread in ipairs(threads) do
    for key, _ in pairs(t) do
      t[key] = t[key] + (thread:get(key) or 0)
    end
  end
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "connect_errors": %d, "read_errors": %d, '
      .. '"write_errors": %d, "timeouts": %d, "p50_us": %d, "p99_us": %d, "s2": %d, '
      .. '"s409": %d, "s5": %d, "other": %d, "granted": %d}\n',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout, latency:percentile(50),
    latency:percentile(99), t.s2, t.s409, t.s5, t.other, t.granted))
end
