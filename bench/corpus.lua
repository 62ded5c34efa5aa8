-- bench/corpus.lua: wrk script that sends every body of a corpus at most once.
--
--   wrk -t T -c C -d D --latency -s bench/corpus.lua URL -- SLICES CONTENT_TYPE RATE HEADER T
--
-- SLICES is a path prefix: wrk thread i reads SLICES.i, one request body per
-- line (bench/run splits the corpus so that the slices are disjoint). Each
-- body is sent once, as a POST to URL's path with CONTENT_TYPE. When a
-- thread's slice runs out, its connections go idle (an empty request is
-- "sent": nothing is written) instead of sending anything again, and done()
-- reports the run as exhausted: its requests/s then understate the server.
--
-- RATE (requests/s over all threads, 0 or absent: as fast as possible)
-- paces the run: each thread keeps a fixed schedule of RATE/T sends per
-- second (a send slot every T/RATE s; a connection whose response came back
-- waits for the next free slot), so the offered rate does not depend on the
-- latency (wrk2's constant-throughput idea, with wrk's delay() hook; the
-- timer resolution is 1 ms).
--
-- HEADER is "Name: value" added to every request (the webhook reference's
-- X-Signature), or "-" for none. T is wrk's -t (the rate is split evenly).
--
-- At the end one line starting with "BENCH " is printed for bench/run:
-- requests (responses received), built (requests handed to wrk, i.e. sent),
-- wrk's error counters (err_status: HTTP status > 399), latency percentiles
-- in microseconds. There is deliberately no response() hook (it makes wrk
-- copy every header into a Lua table, ~10% more client CPU): bench/run
-- proves "every request verified and committed" against the store instead
-- (rows == requests sent, no rejection rows, err_status == 0).
--
-- wrk calls request() once on thread 0 before the run, only to check the
-- request syntax; that first body is kept and sent as the thread's first
-- real request, so no body is skipped and none is sent twice.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk, bench_timespec *ts);
]]
local ts = ffi.new("bench_timespec")
local function now_ms()
    ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
    return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

-- ---- main state: number the threads, collect their counters at the end ----

local threads = {}

function setup(thread)
    thread:set("tid", #threads)
    table.insert(threads, thread)
end

function done(summary, latency, requests)
    local built, exhausted, behind = 0, 0, 0
    for _, t in ipairs(threads) do
        built = built + (t:get("built") or 0)
        exhausted = exhausted + (t:get("exhausted") or 0)
        behind = math.max(behind, t:get("behind_ms") or 0)
    end
    local e = summary.errors
    io.write(string.format(
        "BENCH requests=%d duration_us=%d bytes=%d built=%d exhausted_threads=%d " ..
        "err_connect=%d err_read=%d err_write=%d err_timeout=%d err_status=%d " ..
        "lat_mean=%.1f lat_p50=%d lat_p90=%d lat_p99=%d lat_p999=%d lat_max=%d " ..
        "schedule_behind_ms=%.1f\n",
        summary.requests, summary.duration, summary.bytes, built, exhausted,
        e.connect, e.read, e.write, e.timeout, e.status,
        latency.mean, latency:percentile(50), latency:percentile(90),
        latency:percentile(99), latency:percentile(99.9), latency.max, behind))
end

-- ---- thread states ----------------------------------------------------------

local file, head, peeked
built = 0        -- requests handed to wrk (globals: read by done() through thread:get)
exhausted = 0
behind_ms = 0    -- how far the paced schedule fell behind (0 when unpaced)
local interval_ms, next_slot

function init(args)
    local prefix, ctype, rate, header = args[1], args[2], tonumber(args[3] or "0"), args[4]
    file = assert(io.open(prefix .. "." .. tid, "rb"))
    peek = (tid == 0) -- wrk's syntax check comes first, on thread 0 only
    -- What wrk.format would write before Content-Length, built once: the
    -- load generator shares the cores with the server, and formatting every
    -- request through wrk.format's header table cost it ~15% more CPU.
    local host = wrk.port and (wrk.host .. ":" .. wrk.port) or wrk.host
    head = "POST " .. wrk.path .. " HTTP/1.1\r\nHost: " .. host .. "\r\nContent-Type: " .. ctype .. "\r\n"
    if header and header ~= "" and header ~= "-" then
        local name, value = header:match("^([^:]+):%s*(.*)$")
        head = head .. name .. ": " .. value .. "\r\n"
    end
    if rate and rate > 0 then
        -- threads split the rate evenly (wrk gives each thread C/T connections)
        local nthreads = tonumber(args[5] or "2")
        interval_ms = 1000 * nthreads / rate
    else
        delay = nil -- no delay() hook: wrk sends as fast as responses come back
    end
end

function delay()
    local t = now_ms()
    if not next_slot then
        next_slot = t
    end
    local slot = next_slot
    next_slot = next_slot + interval_ms
    if t - slot > behind_ms then
        behind_ms = t - slot
    end
    local d = slot - t
    if d < 0 then
        return 0
    end
    return math.floor(d)
end

-- One POST with this body, as wrk.format("POST", path, headers, body) would.
local function post(body)
    return head .. "Content-Length: " .. #body .. "\r\n\r\n" .. body
end

function request()
    local body
    if peek then
        -- wrk's syntax check: hand it the first body without counting it
        peek = false
        peeked = file:read("*l")
        return post(peeked or "")
    end
    if peeked then
        body, peeked = peeked, nil
    else
        body = file:read("*l")
    end
    if not body or body == "" then
        -- the slice is used up: send nothing more on this connection
        exhausted = 1
        return ""
    end
    built = built + 1
    return post(body)
end
