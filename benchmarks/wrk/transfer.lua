-- wrk script of the HTTP benchmark: POSTs transfer events built from a pool of
-- (pay_account, rcv_account, amount) rows, each with a new event_id and the wall clock as
-- its event time (epoch ms), so event times increase as a live service sees them.
--
-- Settings come from the environment (wrk hands script arguments to the threads only, and
-- done() runs in the main interpreter):
--   RISKBENCH_POOL     file of tab-separated rows: pay_account, rcv_account, amount
--   RISKBENCH_OFFSET   row to start from (a run continues where the previous one stopped)
--   RISKBENCH_THREADS  wrk's -t (each thread takes every THREADS-th row)
--   RISKBENCH_BATCH    0: one event per request; N: a JSON list of N events per request
--   RISKBENCH_TAG      event_id prefix, unique per run
--   RISKBENCH_PATH     request path
--   RISKBENCH_OUT      where done() writes its JSON summary

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_usec; } riskbench_timeval;
int gettimeofday(riskbench_timeval *tv, void *tz);
]]
local tv = ffi.new("riskbench_timeval")

local function now_ms()
    ffi.C.gettimeofday(tv, nil)
    return tonumber(tv.tv_sec) * 1000 + math.floor(tonumber(tv.tv_usec) / 1000)
end

local threads_seen = 0

function setup(thread)
    thread:set("tid", threads_seen)
    threads_seen = threads_seen + 1
end

local pay, rcv, amt = {}, {}, {}
local rows, next_row, counter = 0, 0, 0
local prefix, path, batch
local headers = { ["Content-Type"] = "application/json" }
local FORMAT = '{"event_id":"%s-%d","timestamp":%.0f,"pay_account":"%s",'
    .. '"rcv_account":"%s","amount":%s}'

function init(args)
    local nthreads = tonumber(os.getenv("RISKBENCH_THREADS") or "1")
    local offset = tonumber(os.getenv("RISKBENCH_OFFSET") or "0")
    batch = tonumber(os.getenv("RISKBENCH_BATCH") or "0")
    path = os.getenv("RISKBENCH_PATH") or "/v1/transfer/evaluate"
    prefix = (os.getenv("RISKBENCH_TAG") or "bench") .. "-" .. tid
    local i = 0
    for line in io.lines(os.getenv("RISKBENCH_POOL")) do
        if i % nthreads == tid then
            local p, r, a = line:match("^([^\t]+)\t([^\t]+)\t([^\t]+)$")
            rows = rows + 1
            pay[rows], rcv[rows], amt[rows] = p, r, a
        end
        i = i + 1
    end
    next_row = math.floor(offset / nthreads) % rows
end

local function event()
    counter = counter + 1
    next_row = next_row % rows + 1
    return string.format(FORMAT, prefix, counter, now_ms(), pay[next_row], rcv[next_row],
        amt[next_row])
end

function request()
    local body
    if batch > 0 then
        local items = {}
        for k = 1, batch do
            items[k] = event()
        end
        body = "[" .. table.concat(items, ",") .. "]"
    else
        body = event()
    end
    return wrk.format("POST", path, headers, body)
end

function done(summary, latency, requests)
    local e = summary.errors
    local parts = {
        string.format('"duration_us":%d', summary.duration),
        string.format('"requests":%d', summary.requests),
        string.format('"bytes":%d', summary.bytes),
        string.format('"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}',
            e.connect, e.read, e.write, e.status, e.timeout),
        string.format('"latency_us":{"min":%d,"mean":%.1f,"max":%d,"stdev":%.1f,'
            .. '"p50":%d,"p75":%d,"p90":%d,"p99":%d,"p99_9":%d}',
            latency.min, latency.mean, latency.max, latency.stdev,
            latency:percentile(50), latency:percentile(75), latency:percentile(90),
            latency:percentile(99), latency:percentile(99.9)),
    }
    local out = assert(io.open(os.getenv("RISKBENCH_OUT"), "w"))
    out:write("{" .. table.concat(parts, ",") .. "}\n")
    out:close()
end
