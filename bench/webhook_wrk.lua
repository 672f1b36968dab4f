-- bench/webhook_wrk.lua - wrk script for bench/webhook.sh.
--
--   wrk ... -s bench/webhook_wrk.lua URL -- MODE [FILE]
--
-- MODE static:  GET the URL (nginx's static 200, the anchor).
-- MODE bad:     POST the envelope in FILE's first line with a wrong signature (401 expected).
-- MODE signed:  POST the envelope with a distinct, validly signed webhook-id per request, from
--               FILE's later lines ("ID TIMESTAMP SIGNATURE"); never reused within a run
--               (runcell-fcgi would answer a reused id as a duplicate), `wrapped` says if it was.
-- done() prints one line: "RESULT requests seconds p50_ms p95_ms mean_ms errors wrapped sN:COUNT ..."
-- (socket errors and timeouts; the HTTP statuses with their counts), which bench/webhook.sh parses.
local mode, reqs, i = "static", {}, 0
statuses = {}
wrapped = 0

function init(args)
    mode = args[1] or "static"
    if mode == "static" then
        reqs[1] = wrk.format("GET")
        return
    end
    local f = assert(io.open(args[2], "r"))
    local body = f:read("*l")
    local h = { ["content-type"] = "application/json" }
    if mode == "bad" then
        h["webhook-id"] = "msg_bench_bad"
        h["webhook-timestamp"] = tostring(os.time())
        h["webhook-signature"] = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
        reqs[1] = wrk.format("POST", nil, h, body)
    else
        for line in f:lines() do
            local id, ts, sig = line:match("^(%S+) (%S+) (%S+)$")
            if id then
                h["webhook-id"], h["webhook-timestamp"], h["webhook-signature"] = id, ts, sig
                reqs[#reqs + 1] = wrk.format("POST", nil, h, body)
            end
        end
    end
    f:close()
end

function request()
    i = i + 1
    if i > #reqs then
        i = 1
        if mode == "signed" then wrapped = 1 end
    end
    return reqs[i]
end

function response(status, headers, body)
    statuses[status] = (statuses[status] or 0) + 1
end

local threads = {}
function setup(thread) table.insert(threads, thread) end

function done(summary, latency, requests)
    local all, w = {}, 0
    for _, t in ipairs(threads) do
        for k, v in pairs(t:get("statuses")) do all[k] = (all[k] or 0) + v end
        w = math.max(w, t:get("wrapped"))
    end
    local s = ""
    for k, v in pairs(all) do s = s .. string.format(" s%d:%d", k, v) end
    local e = summary.errors
    io.write(string.format("RESULT %d %.3f %.3f %.3f %.3f %d %d%s\n", summary.requests,
        summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(95) / 1000,
        latency.mean / 1000, e.connect + e.read + e.write + e.timeout, w, s))
end
