-- wrk script: every request is a new Alertmanager group, so a new incident (never the dedup path).
--
--   wrk -t1 -c32 -d10s -s bench/wrk_new_incident.lua URL -- BODY_TEMPLATE SEED
--
-- BODY_TEMPLATE is a file holding an Alertmanager v4 body in which "@@G@@" stands for the group;
-- SEED seeds math.random (wrk never seeds it, so unseeded runs would replay the same keys). Each
-- thread mixes its own id into the seed, so threads of one run draw different prefixes too.

local counter = 0
local prefix = ""
local template = ""
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function init(args)
  local f = assert(io.open(args[1], "rb"))
  template = f:read("*a")
  f:close()
  local seed = tonumber(args[2]) or os.time()
  math.randomseed(seed * 7919 + (tid or 0))
  prefix = string.format("%06x%06x", math.random(0, 0xffffff), math.random(0, 0xffffff))
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer bench"
end

function request()
  counter = counter + 1
  local group = prefix .. "-" .. counter
  local body = template:gsub("@@G@@", group)
  return wrk.format(nil, nil, nil, body)
end
