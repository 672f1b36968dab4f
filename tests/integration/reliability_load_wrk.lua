-- tests/integration/reliability_load_wrk.lua - the webhook flood of reliability_load.sh (issue 9,
-- "Load"): wrk POSTs deliveries to the nginx webhook route, mostly with a wrong signature (401
-- expected, nothing polled) and one in EVERY with a valid signature and a webhook-id never sent
-- before (runcell-fcgi verifies, dedupes and drains the environment: 200).
--
--   wrk ... -s tests/integration/reliability_load_wrk.lua URL -- FILE EVERY
--
-- FILE: the envelope on its first line, then "ID TIMESTAMP SIGNATURE" lines (signed by the test).
-- If the signed lines run out they are reused (answered `duplicate`), and `wrapped` says so.
-- done() prints one line that the test parses:
--   "RESULT requests seconds errors wrapped valid_sent sN:COUNT ..."
-- (socket errors + timeouts; then the HTTP statuses with their counts).
local bad, signed, n, j = nil, {}, 0, 0
statuses = {}
wrapped = 0
valid = 0
local every = 10

function init(args)
    local f = assert(io.open(args[1], "r"))
    every = tonumber(args[2]) or 10
    local body = f:read("*l")
    local h = { ["content-type"] = "application/json" }
    h["webhook-id"] = "msg_load_bad"
    h["webhook-timestamp"] = tostring(os.time())
    h["webhook-signature"] = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
    bad = wrk.format("POST", nil, h, body)
    for line in f:lines() do
        local id, ts, sig = line:match("^(%S+) (%S+) (%S+)$")
        if id then
            h["webhook-id"], h["webhook-timestamp"], h["webhook-signature"] = id, ts, sig
            signed[#signed + 1] = wrk.format("POST", nil, h, body)
        end
    end
    f:close()
end

function request()
    n = n + 1
    if every > 0 and #signed > 0 and n % every == 0 then
        j = j + 1
        if j > #signed then
            j = 1
            wrapped = 1
        end
        valid = valid + 1
        return signed[j]
    end
    return bad
end

function response(status, headers, body)
    statuses[status] = (statuses[status] or 0) + 1
end

local threads = {}
function setup(thread) table.insert(threads, thread) end

function done(summary, latency, requests)
    local all, w, v = {}, 0, 0
    for _, t in ipairs(threads) do
        for k, c in pairs(t:get("statuses")) do all[k] = (all[k] or 0) + c end
        w = math.max(w, t:get("wrapped"))
        v = v + t:get("valid")
    end
    local s = ""
    for k, c in pairs(all) do s = s .. string.format(" s%d:%d", k, c) end
    local e = summary.errors
    io.write(string.format("RESULT %d %.3f %d %d %d%s\n", summary.requests, summary.duration / 1e6,
        e.connect + e.read + e.write + e.timeout, w, v, s))
end
