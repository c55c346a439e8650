-- riskengine's Redis feature state, as one Redis Functions library per scene plan.
--
-- store.py puts the library together: a `#!lua name=...` line, this file, a table
-- PLANS of the plan tables of riskengine/state/redis/plan.py (one per EntityPlan), then
-- one `redis.register_function(name, lazy(function(lib) return lib.entity_at(PLANS, i)
-- end))` per plan, `lib.event(PLANS)` (one event's whole step on one server), plus
-- `lib.clock` and `lib.unclock` (the scene clock), `lib.recall` (an idempotency record),
-- `lib.inspect` and `lib.pattern` (sequence patterns). The load run of a library sees no globals but
-- `redis`, so `library()` builds the helpers at the first call, and each function builds
-- its plan's closures at its own first call: once per server, after which a call only
-- executes.
-- docs/semantics.md is the contract; riskengine/state/redis/__init__.py documents the
-- key and blob layout.
--
-- An entity function, FCALL <name> 3 <bucket> <own key> <entries key> <args...>:
-- keys[1]  the bucket hash of the entity (small entities are fields of it)
-- keys[2]  the entity's own hash (where it lives once it outgrows a bucket field)
-- keys[3]  the entity's sorted set of entries (then)
-- args[1]  mode: 'a' apply | 'p' peek (read at t, no event, nothing written: the first
--          reply value is 1 when the key holds anything)
-- args[2]  t, the event time (ms)
-- args[3]  G, the scene clock before this event ('' when no event was accepted yet)
-- args[4]  1 when the event is late (t < G - L, decided by the clock step), else 0
-- args[5]  idempotency horizon G - L - Wmax(scene) ('' for none)
-- args[6]  digest of the event id
-- args[7]  mask of the groups whose `where` filter the event passed
-- args[8]  TTL in ms (0: none)
-- args[9]  the entity's field in the bucket (its key value)
-- args[10] the largest value kept as a bucket field (bytes)
-- args[11] F, the clock keys are forgotten and swept by: the slowest of G and the other
--          partitions' clocks ('' for none; G itself for the scene's one clock)
-- args[12..] slot texts of the event ('' when null or absent): q in decimal for a slot
--          of QSLOT, else a value text (riskengine/state/redis/codec.py)
--
-- Reply: {late (0/1), 1 when answered from the guard record (0/1), value 1, ...,
-- value NOUT}. The entity never decides lateness: the caller's flag says whether the
-- event is scored over the whole window and stored, or scored above the floor
-- G - L - W and stored nowhere.

local LIB

local function library()
  if LIB then return LIB end
  local floor, fmt, concat = math.floor, string.format, table.concat
  local sub, find, byte, char = string.sub, string.find, string.byte, string.char
  local tinsert, tremove, band = table.insert, table.remove, bit.band
  local tonumber, pairs, ipairs, type = tonumber, pairs, ipairs, type
  local unpack, setmetatable, rawget, rawset = unpack, setmetatable, rawget, rawset
  local BASE = 10000
  local SPILL = 2 ^ 52
  local HALF = 2 ^ 26
  local LAST = 2 ^ 53

  -- ------------------------------------------------------------------ expiry

  -- A written key keeps a TTL of at least `ttl` (ms, 0: none): it is set to 2 * ttl
  -- once less than ttl is left, not on every write (each refresh is a PEXPIREAT in the
  -- AOF). A key written last at any moment lives between ttl and 2 * ttl after it.
  local function keep_alive(key, ttl)
    if ttl > 0 and redis.call('PTTL', key) < ttl then
      redis.call('PEXPIRE', key, 2 * ttl)
    end
  end

  -- ------------------------------------------------------------------ arithmetic

  local function fdiv(a, b)
    local q = floor(a / b)
    local r = a - q * b
    if r < 0 then q = q - 1 elseif r >= b then q = q + 1 end
    return q
  end

  -- Exact integers beyond 2^53 as arrays of base-10^4 limbs: sum of l[i] * 10^(4(i-1)).
  local function addlimbs(dst, src, sign)
    for i = 1, #src do dst[i] = (dst[i] or 0) + sign * src[i] end
  end

  local function carry(a)
    local n = #a
    if n == 0 then return end
    local c = 0
    for i = 1, n - 1 do
      local v = a[i] + c
      local q = fdiv(v, BASE)
      a[i] = v - q * BASE
      c = q
    end
    local top = a[n] + c
    while top >= BASE or top <= -BASE do
      local q = fdiv(top, BASE)
      a[n] = top - q * BASE
      n = n + 1
      top = q
    end
    a[n] = top
  end

  local function limbs_of_number(x)
    local out, n, s = {}, 0, 1
    if x < 0 then s = -1; x = -x end
    while x > 0 do
      local q = fdiv(x, BASE)
      n = n + 1
      out[n] = s * (x - q * BASE)
      x = q
    end
    return out
  end

  local function limbs_of_text(q)
    local out, n, s, a = {}, 0, 1, 1
    if byte(q, 1) == 45 then s = -1; a = 2 end
    local j = #q
    while j >= a do
      local i = j - 3
      if i < a then i = a end
      n = n + 1
      out[n] = s * tonumber(sub(q, i, j))
      j = i - 1
    end
    return out
  end

  local function squares_of(l)
    local n, l2 = #l, {}
    for m = 1, 2 * n - 1 do l2[m] = 0 end
    for i = 1, n do
      local li = l[i]
      if li ~= 0 then
        for j = 1, n do l2[i + j - 1] = l2[i + j - 1] + li * l[j] end
      end
    end
    return l2
  end

  -- decimal text of (fast double + limbs)
  local function todec(fast, limbs)
    if #limbs == 0 then
      if fast == 0 then return '0' end
      return fmt('%.0f', fast)
    end
    local a = limbs_of_number(fast)
    addlimbs(a, limbs, 1)
    carry(a)
    local n = #a
    if n == 0 then return '0' end
    local sign = ''
    if a[n] < 0 then
      sign = '-'
      for i = 1, n do a[i] = -a[i] end
      carry(a)
      n = #a
    end
    local parts = {sign, fmt('%.0f', a[n])}
    for i = n - 1, 1, -1 do parts[#parts + 1] = fmt('%04d', a[i]) end
    return concat(parts)
  end

  -- A slot holds micro-units q or a value text (riskengine/state/redis/codec.py). Python
  -- quantises; the script never rounds. q comes as decimal text and is kept as a number
  -- when |q| < 2^52 (exactly: a decimal integer below 2^53 converts exactly, a larger
  -- one to a double >= 2^53), else as its text, summed through limbs.
  local function micro(txt)
    local q = tonumber(txt)
    if q < SPILL and q > -SPILL then return q end
    return txt
  end

  -- A value text is R [\2 distinct key]; strings (R starts with ') have no extra.
  local function parts(txt)
    if byte(txt, 1) == 39 then return txt, nil end
    local i = find(txt, '\2', 1, true)
    if not i then return txt, nil end
    return sub(txt, 1, i - 1), sub(txt, i + 1)
  end

  -- the distinct key of a value text
  local function dkey(txt)
    local r, d = parts(txt)
    return d or r
  end

  -- Exact sums of micro-units: state st = {k, s, sl, a, al, b, bl, c, cl, dl} where the
  -- numbers are doubles kept below 2^52 (so every addition is exact) and the tables are
  -- limbs they spill into. sum = s + sl; sum of squares = (a + al) * 2^52
  -- + 2 (b + bl) * 2^26 + (c + cl) + dl, with q = qa * 2^26 + qb, a = qa^2, b = qa qb,
  -- c = qb^2; dl holds the squares of the rare |q| >= 2^52 (kept as text). Values are
  -- added (sign 1) or taken away (sign -1) exactly. Limbs nothing spilled into are the
  -- shared, never written NOLIMBS.
  local NOLIMBS = {}

  local function qstate()
    return {0, 0, NOLIMBS, 0, NOLIMBS, 0, NOLIMBS, 0, NOLIMBS, NOLIMBS}
  end

  -- the limbs at st[at], writable
  local function limbs_at(st, at)
    local l = st[at]
    if l == NOLIMBS then
      l = {}
      st[at] = l
    end
    return l
  end

  local function copy_limbs(l)
    if #l == 0 then return NOLIMBS end
    local m = {}
    for i = 1, #l do m[i] = l[i] end
    return m
  end

  local function qcopy(st)
    return {st[1], st[2], copy_limbs(st[3]), st[4], copy_limbs(st[5]), st[6],
            copy_limbs(st[7]), st[8], copy_limbs(st[9]), copy_limbs(st[10])}
  end

  local function fadd(st, at, x)
    local v = st[at] + x
    if v >= SPILL or v <= -SPILL then
      local l = limbs_at(st, at + 1)
      addlimbs(l, limbs_of_number(v), 1)
      carry(l)
      v = 0
    end
    st[at] = v
  end

  -- add (sign 1) or take away (sign -1) one value's micro-units q (a slot's number or,
  -- beyond 2^52, text)
  local function qadd(st, q, squares, sign)
    st[1] = st[1] + sign
    if type(q) == 'string' then
      local l = limbs_of_text(q)
      local sl = limbs_at(st, 3)
      addlimbs(sl, l, sign); carry(sl)
      if squares then
        local dl = limbs_at(st, 10)
        addlimbs(dl, squares_of(l), sign); carry(dl)
      end
      return
    end
    fadd(st, 2, sign * q)
    if squares then
      local qb = q % HALF
      local qa = (q - qb) / HALF
      fadd(st, 4, sign * qa * qa)
      fadd(st, 6, sign * qa * qb)
      fadd(st, 8, sign * qb * qb)
    end
  end

  -- add (sign 1, the default) or take away (sign -1) a whole state
  local function qmerge(dst, src, sign)
    sign = sign or 1
    dst[1] = dst[1] + sign * src[1]
    for at = 2, 8, 2 do
      fadd(dst, at, sign * src[at])
      if #src[at + 1] > 0 then
        local l = limbs_at(dst, at + 1)
        addlimbs(l, src[at + 1], sign)
        carry(l)
      end
    end
    if #src[10] > 0 then
      local l = limbs_at(dst, 10)
      addlimbs(l, src[10], sign)
      carry(l)
    end
  end

  local function qnormal(st)
    for at = 3, 9, 2 do carry(st[at]) end
    carry(st[10])
  end

  -- ------------------------------------------------------------------ accumulators

  -- acc: n events; per item j: q[j] a q state; set[j], nd[j] distinct keys; holders of
  -- min/max/first/last as parallel arrays hv (number), ht (time), ho (order), hr (text).
  -- Ties go to the earlier (time, order): order is the entry index, 0 for a tile, 2^53
  -- for the event itself (the latest of its time).
  local function newacc(items)
    local a = {n = 0}
    for j = 1, #items do
      local kind = items[j][1]
      if kind == 'q' then
        if not a.q then a.q = {} end
        a.q[j] = qstate()
      elseif kind == 'd' then
        if not a.set then a.set, a.nd = {}, {} end
        a.set[j] = {}; a.nd[j] = 0
      elseif not a.ht then
        a.hv, a.ht, a.ho, a.hr = {}, {}, {}, {}
      end
    end
    return a
  end

  local function offer(a, j, kind, r, v, tx, o)
    local ht = a.ht[j]
    local take
    if ht == nil then
      take = true
    elseif kind == 'fi' then
      take = tx < ht or (tx == ht and o < a.ho[j])
    elseif kind == 'la' then
      take = tx > ht or (tx == ht and o > a.ho[j])
    else
      local hv = a.hv[j]
      if v ~= hv then
        if kind == 'mn' then take = v < hv else take = v > hv end
      else
        take = tx < ht or (tx == ht and o < a.ho[j])
      end
    end
    if take then
      a.hv[j], a.ht[j], a.ho[j], a.hr[j] = v, tx, o, r
    end
    return take
  end

  -- offer one value text to an edge item (min/max/first/last)
  local function offer_text(a, j, kind, txt, tx, o)
    local r = parts(txt)
    local v = 0
    if kind == 'mn' or kind == 'mx' then v = tonumber(r) end
    return offer(a, j, kind, r, v, tx, o)
  end

  local function acc_merge(a, items, tile)
    a.n = a.n + tile[2]
    for j = 1, #items do
      local kind = items[j][1]
      local st = tile[2 + j]
      if kind == 'q' then
        qmerge(a.q[j], st)
      elseif kind == 'd' then
        local set = a.set[j]
        for dk in pairs(st) do
          if not set[dk] then set[dk] = true; a.nd[j] = a.nd[j] + 1 end
        end
      elseif st then
        local v = 0
        if kind == 'mn' or kind == 'mx' then v = tonumber(st[2]) end
        offer(a, j, kind, st[2], v, st[1], 0)
      end
    end
  end

  local function emit(a, win, out)
    local outs = win.outs
    for x = 1, #outs do
      local o = outs[x]
      local func, j = o[2], o[3]
      local v
      if func == 'count' then
        v = a.n
      elseif func == 'sum' or func == 'avg' or func == 'stddev' then
        local st = a.q[j]
        local k = st[1]
        if k == 0 then
          v = false
        elseif func == 'sum' then
          v = todec(st[2], st[3])
        elseif func == 'avg' then
          v = fmt('%d ', k) .. todec(st[2], st[3])
        else
          v = concat({fmt('%d', k), todec(st[2], st[3]), todec(st[4], st[5]),
                      todec(st[6], st[7]), todec(st[8], st[9]), todec(0, st[10])}, ' ')
        end
      elseif func == 'count_distinct' then
        v = a.nd[j]
        if v == 0 then v = false end
      else
        v = a.hr[j] or false
      end
      out[o[1]] = v
    end
  end

  -- ------------------------------------------------------------------ tiles

  local function newtile(items, idx)
    local tile = {idx, 0}
    for j = 1, #items do
      local kind = items[j][1]
      if kind == 'q' then tile[2 + j] = qstate()
      elseif kind == 'd' then tile[2 + j] = {}
      else tile[2 + j] = false end
    end
    return tile
  end

  -- ------------------------------------------------------------------ the plan

  -- Per window of a history group: `run` the items (sums, distinct counts) a window's
  -- running state keeps, `edge` the first/last/min/max items it reads from its entries,
  -- `scan` whether one of those is min/max (read by scanning the whole window), `tags`
  -- the prefixes of the hash fields of its distinct counters in a paged entity.
  local XPARTS = 64
  -- the layout of the kept fields of min/max windows (see `xkept`), in a busy entity's
  -- header: an entity whose header lacks it drops them
  local XMARK = 2
  local function prepare(P)
    local hx = 0
    for g = 1, #P.G do
      local grp = P.G[g]
      -- a tiled group of counts and sums only: its tiles can be taken apart again
      grp.sub = true
      for j = 1, #grp.items do
        if grp.items[j][1] ~= 'q' then grp.sub = false end
      end
      if not grp.tiled then
        hx = hx + 1
        grp.hx = hx
        for w = 1, #grp.wins do
          local win = grp.wins[w]
          local run, edge, seen, scan, tags = {}, {}, {}, false, {}
          local xs, xtags, mtags = {}, {}, {}
          for x = 1, #win.outs do
            local j = win.outs[x][3]
            if j > 0 and not seen[j] then
              seen[j] = true
              local kind = grp.items[j][1]
              if kind == 'q' or kind == 'd' then
                run[#run + 1] = j
                tags[j] = 'd' .. hx .. '.' .. w .. '.' .. j .. '|'
              else
                edge[#edge + 1] = j
                if kind == 'mn' or kind == 'mx' then
                  scan = true
                  xs[#xs + 1] = j
                  xtags[j] = 'x' .. hx .. '.' .. w .. '.' .. j .. '|'
                  mtags[j] = 'm' .. hx .. '.' .. w .. '.' .. j
                end
              end
            end
          end
          -- a busy entity keeps, per min/max item of a window, the extreme of each
          -- span of W / XPARTS of time (see `extreme`)
          win.run, win.edge, win.scan, win.tags = run, edge, scan, tags
          win.xs, win.xtags, win.mtags, win.xspan = xs, xtags, mtags, floor(win.w / XPARTS)
          if win.xspan < 1 then win.xspan = 1 end
        end
      end
    end
    P.NHIST = hx
    return P
  end

  -- ------------------------------------------------------------------ one entity plan

  local function entity(P)
    prepare(P)
    local L, RMAX, STRIDE, MASKED = P.L, P.RMAX, P.STRIDE, P.MASKED
    local NSLOT, QSLOT, NOUT, DEPTH, GROUPS = P.NSLOT, P.QSLOT, P.NOUT, P.DEPTH, P.G
    local NHIST, RUNMIN, SWEEP, IDLE = P.NHIST, P.RUNMIN, P.SWEEP, P.IDLE
    local BLOCK = P.CHUNK
    local OFF = STRIDE - NSLOT
    local RSTRIDE = 3 + NOUT
    local SLOT0 = 11

    -- the call's arguments (set at the start of every call)
    local bucket, own, zkey, field, mode, digest
    local t, G, F, late, horizon, pmask, ttl, small
    local EV = {}  -- the event's slot values (false for null)
    -- The entity as loaded. A small entity is one bucket field, value msgpack(header) ..
    -- msgpack({header - base, entries, tiles, ring, running}); header = newest time the
    -- entity holds (entry or guard record), what the sweep of idle siblings reads;
    -- entries is flat: per entry dt (t - base), [mask], slot values (false for null: q
    -- as a number, or as text beyond 2^52; value texts);
    -- tiles has one list per tiled group; ring is flat: per record digest, dt, flags (1
    -- late), values; running (busy entities only)
    -- holds per history group and window a running state {B, count, item states...} of
    -- the entries later than B. An entity too big for its bucket field is *paged*: its
    -- entries go to its own sorted set (zkey; score: the entry's time; member: its
    -- arrival number in 5 big-endian bytes, so that entries of one time sort by arrival,
    -- then msgpack of its mask and slots), the rest to its own hash (own): field 'h' the
    -- same blob with `false` for entries and the next arrival number, fields
    -- 'd<group>.<window>.<item>|<distinct key>' the counts of its running distinct sets.
    -- An event then adds one member, rewrites the header and the counts it changed:
    -- what it writes does not grow with the entity. E is filled block by block (BLOCK
    -- entries, by rank) as the call reads it (a metatable loads a block on its first
    -- read), so a call costs what it reads, not the entity's size. A paged entity goes
    -- back to its bucket once it holds at most BLOCK entries and fits in three quarters
    -- of a field.
    local packed, in_bucket, paged, was_paged, thr_low
    local base, E, TILES, RING, RUN, N
    local NEXT, ZMAX, DCACHE, DDIRTY
    local ARR, EVSEQ, XLO, XCACHE, XDIRTY  -- arrivals of E's entries; extremes by span
    local TS, TCACHE, TDIRTY  -- closed tiles of a paged entity (see `tiled_running`)

    -- ---------------------------------------------------------------- the sorted set

    -- an arrival number as 5 big-endian bytes (members of one score sort by them)
    local function arrival(n)
      local b = {}
      for k = 5, 1, -1 do
        b[k] = n % 256
        n = (n - b[k]) / 256
      end
      return char(b[1], b[2], b[3], b[4], b[5])
    end

    -- the member of a new entry `row` ({dt, [mask], slots...}), the next arrival
    local function member(row)
      local m = arrival(NEXT)
      NEXT = NEXT + 1
      if STRIDE == 1 then return m end
      local rest = {}
      for f = 2, STRIDE do rest[f - 1] = row[f] end
      return m .. cmsgpack.pack(rest)
    end

    -- entries from..to of a paged entity into E (one ZRANGE by rank)
    local function load_range(from, to)
      if from < 1 then from = 1 end
      if to > N then to = N end
      if from > to then return end
      local got = redis.call('ZRANGE', zkey, from - 1, to - 1, 'WITHSCORES')
      local at = (from - 1) * STRIDE
      -- E's metatable has no __newindex: these are plain stores
      local i = from
      for x = 1, #got, 2 do
        local m = got[x]
        E[at + 1] = tonumber(got[x + 1]) - base
        ARR[i] = (((byte(m, 1) * 256 + byte(m, 2)) * 256 + byte(m, 3)) * 256 + byte(m, 4))
                 * 256 + byte(m, 5)
        i = i + 1
        if STRIDE > 1 then
          local rest = cmsgpack.unpack(sub(m, 6))
          for f = 2, STRIDE do E[at + f] = rest[f - 1] end
        end
        at = at + STRIDE
      end
    end

    -- a read of an entry not loaded yet loads BLOCK entries around it
    local PAGED_E = {__index = function(tbl, pos)
      if pos < 1 or pos > N * STRIDE then return nil end
      local i = floor((pos - 1) / STRIDE) + 1
      if rawget(tbl, (i - 1) * STRIDE + 1) ~= nil then return nil end
      local half = floor(BLOCK / 2)
      load_range(i - half, i + BLOCK - half - 1)
      return rawget(tbl, pos)
    end}

    -- entries from..to (about to be read in a row) loaded in one call
    local function need(from, to)
      if not paged then return end
      for i = from, to do
        if rawget(E, (i - 1) * STRIDE + 1) == nil then
          load_range(i, to)
          return
        end
      end
    end

    -- E of a paged entity, nothing read yet (again after its entries changed)
    local function paged_entries()
      E, ARR = setmetatable({}, PAGED_E), {}
    end

    -- ZADD / HSET / HDEL `items` in batches (Lua's unpack has a limit)
    local function write(command, key, items)
      for from = 1, #items, 512 do
        local to = from + 511
        if to > #items then to = #items end
        redis.call(command, key, unpack(items, from, to))
      end
    end

    -- ---------------------------------------------------------------- entries

    local function value_of(i, s)
      if i == 0 then return EV[s] end
      return E[(i - 1) * STRIDE + OFF + s]
    end

    local function entry_t(i) return base + E[(i - 1) * STRIDE + 1] end

    local function entry_mask(i)
      if MASKED then return E[(i - 1) * STRIDE + 2] end
      return 1
    end

    local function in_group(i, bitg)
      return not MASKED or band(E[(i - 1) * STRIDE + 2], bitg) ~= 0
    end

    -- last index whose time is <= x (entries are sorted by time, then arrival)
    local function search(x)
      local n = N
      if n == 0 then return 0 end
      if paged then return redis.call('ZCOUNT', zkey, '-inf', x) end
      if entry_t(n) <= x then return n end
      if entry_t(1) > x then return 0 end
      local lo, hi = 1, n
      -- entry_t(lo) <= x < entry_t(hi)
      while hi - lo > 1 do
        local mid = floor((lo + hi) / 2)
        if entry_t(mid) <= x then lo = mid else hi = mid end
      end
      return lo
    end

    -- the same, remembered until the entries change (AT is emptied then)
    local AT = {}
    local function last_at_or_before(x)
      local found = AT[x]
      if found == nil then
        found = search(x)
        AT[x] = found
      end
      return found
    end

    local function maxts_now()
      if N == 0 then return nil end
      if paged then return ZMAX end
      return entry_t(N)
    end

    local function acc_add(a, items, i, tx, o)
      a.n = a.n + 1
      for j = 1, #items do
        local it = items[j]
        local val = value_of(i, it[2])
        if val then
          local kind = it[1]
          if kind == 'q' then
            qadd(a.q[j], val, it[3], 1)
          elseif kind == 'd' then
            local dk = dkey(val)
            local set = a.set[j]
            if not set[dk] then set[dk] = true; a.nd[j] = a.nd[j] + 1 end
          else
            offer_text(a, j, kind, val, tx, o)
          end
        end
      end
    end

    -- ---------------------------------------------------------------- extremes

    -- A busy (paged) entity with running states keeps, per window W and min/max item j,
    -- the extreme entry of each *span* b of W / XPARTS of time (the entries x of its
    -- group with a value and floor(t(x) / span) = b): hash field xtags[j] .. b, msgpack
    -- {t, arrival, value text}; XLO[xtags[j]] the lowest span kept. A window's extreme
    -- is then its two edge spans scanned and the spans between read whole: about
    -- 2 N / XPARTS entries and XPARTS fields instead of its N entries. Ties go to the
    -- earlier (time, arrival), as `offer` orders them.

    -- What an event reads changes only when the window's edges cross a span boundary
    -- (every W / XPARTS of the entity's time), so it is kept too, in hash field mtags[j]:
    -- {blo, bhi, t, arrival, value text, then (t, arrival, value text) per candidate}.
    -- The first three are the extreme of the spans strictly between blo and bhi (false:
    -- none), mended as an entry lands in one of them (`xoffer`). The candidates are
    -- span blo's entries that come before every later entry of the span, in time order:
    -- the extreme of the span's entries later than lo is the first candidate later than
    -- lo. An entry landing in span blo drops them. Both are computed again when an
    -- event's blo or bhi differ. An event that is not late reads spans at or above the
    -- lowest kept (`xfloor`), so a kept field whose spans went is never read again. The
    -- top span's own field is the window's top edge when its extreme is at or before
    -- the event (always, for an event at or after the entity's newest entry); otherwise
    -- that span's entries up to the event are read. The header's ninth value (XMARK)
    -- says the entity's kept fields were written by a version that keeps them this way;
    -- without it they are dropped at load.

    -- whether (value v, time tx, arrival o) comes before (hv, ht, ho) for min/max `kind`
    local function xbefore(kind, v, tx, o, hv, ht, ho)
      if v ~= hv then
        if kind == 'mn' then return v < hv end
        return v > hv
      end
      return tx < ht or (tx == ht and o < ho)
    end

    local function xget(f)
      local h = XCACHE[f]
      if h == nil then
        local raw = redis.call('HGET', own, f)
        h = raw and cmsgpack.unpack(raw) or false
        XCACHE[f] = h
      end
      return h
    end

    -- entry (value text txt, time tx, arrival o) into its span of window win, item j
    local function xoffer(win, kind, j, txt, tx, o)
      local r = parts(txt)
      local v = tonumber(r)
      local b, mf = fdiv(tx, win.xspan), win.mtags[j]
      local f = win.xtags[j] .. b
      local m = xget(mf)
      if m and m[1] == b then
        -- span blo changes: its candidates (and so the whole kept field) go
        XCACHE[mf] = false
        XDIRTY[mf] = true
        m = false
      end
      local h = xget(f)
      if h and not xbefore(kind, v, tx, o, tonumber(h[3]), h[1], h[2]) then return end
      XCACHE[f] = {tx, o, r}
      XDIRTY[f] = true
      if m and m[1] < b and b < m[2]
          and (not m[3] or xbefore(kind, v, tx, o, tonumber(m[5]), m[3], m[4])) then
        m[3], m[4], m[5] = tx, o, r
        XDIRTY[mf] = true
      end
    end

    -- drop the kept extremes of every min/max window (the spans are built again)
    local function xforget()
      for g = 1, #GROUPS do
        local grp = GROUPS[g]
        if not grp.tiled then
          for w = 1, #grp.wins do
            local win = grp.wins[w]
            for x = 1, #win.xs do
              local mf = win.mtags[win.xs[x]]
              XCACHE[mf] = false
              XDIRTY[mf] = true
            end
          end
        end
      end
    end

    -- the kept field of window win, item j (of group g) for edge spans blo and bhi: as
    -- kept, or its parts that differ computed again (the spans between by HMGET, span
    -- blo's candidates from its entries)
    local function xkept(g, win, kind, j, s, blo, bhi)
      local mf = win.mtags[j]
      local old = xget(mf)
      if old and old[1] == blo and old[2] == bhi then return old end
      local m = {blo, bhi, false, false, false}
      if old and old[1] == blo then
        for x = 6, #old do m[x] = old[x] end
      else
        local span, bitg, found = win.xspan, g.bit, {}
        local from = last_at_or_before(blo * span - 1) + 1
        local to = last_at_or_before((blo + 1) * span - 1)
        need(from, to)
        local bv, bt, bo
        for i = to, from, -1 do
          local txt = in_group(i, bitg) and value_of(i, s)
          if txt then
            local r = parts(txt)
            local v, tx, o = tonumber(r), entry_t(i), ARR[i]
            if not bv or xbefore(kind, v, tx, o, bv, bt, bo) then
              bv, bt, bo = v, tx, o
              found[#found + 1] = {tx, o, r}
            end
          end
        end
        for x = #found, 1, -1 do
          local c, n = found[x], #m
          m[n + 1], m[n + 2], m[n + 3] = c[1], c[2], c[3]
        end
      end
      local tag, missing = win.xtags[j], {}
      local function take(h)
        if h and (not m[3] or xbefore(kind, tonumber(h[3]), h[1], h[2], tonumber(m[5]), m[3],
                                      m[4])) then
          m[3], m[4], m[5] = h[1], h[2], h[3]
        end
      end
      for b = blo + 1, bhi - 1 do
        local h = XCACHE[tag .. b]
        if h == nil then missing[#missing + 1] = tag .. b else take(h) end
      end
      for from = 1, #missing, 512 do
        local to = from + 511
        if to > #missing then to = #missing end
        local got = redis.call('HMGET', own, unpack(missing, from, to))
        for x = from, to do
          local raw = got[x - from + 1]
          local h = raw and cmsgpack.unpack(raw) or false
          XCACHE[missing[x]] = h
          take(h)
        end
      end
      XCACHE[mf] = m
      XDIRTY[mf] = true
      return m
    end

    -- into the spans of every min/max window of history group g: its entries later
    -- than maxts - L - W (all an event that is not late can read; none without maxts),
    -- or the event (`ev`)
    local function xadd(g, maxts, ev)
      local items, bitg = g.items, g.bit
      for w = 1, #g.wins do
        local win = g.wins[w]
        local from, to = 1, 0
        if maxts and #win.xs > 0 then
          from, to = last_at_or_before(maxts - L - win.w) + 1, N
          need(from, to)
        end
        for x = 1, #win.xs do
          local j = win.xs[x]
          local kind, s = items[j][1], items[j][2]
          for i = from, to do
            local txt = in_group(i, bitg) and value_of(i, s)
            if txt then xoffer(win, kind, j, txt, entry_t(i), ARR[i]) end
          end
          if ev and EV[s] then xoffer(win, kind, j, EV[s], t, EVSEQ) end
        end
      end
    end

    -- spans no event that is not late reads any more (below maxts - L - W) go
    local function xfloor(maxts)
      for g = 1, #GROUPS do
        local grp = GROUPS[g]
        if not grp.tiled then
          for w = 1, #grp.wins do
            local win = grp.wins[w]
            local span = win.xspan
            for x = 1, #win.xs do
              local tag = win.xtags[win.xs[x]]
              local low, keep = XLO[tag], fdiv(maxts - L - win.w, span)
              if low and keep > low then
                -- spans only exist within (W + L) / span + 1 of the lowest
                local top = low + XPARTS + floor(L / span) + 2
                if top > keep - 1 then top = keep - 1 end
                for b = low, top do
                  XCACHE[tag .. b] = false
                  XDIRTY[tag .. b] = true
                end
              end
              if not low or keep > low then XLO[tag] = keep end
            end
          end
        end
      end
    end

    -- the extreme of min/max item j over window win, (lo, t] (entries ilo+1..hi), into
    -- accumulator a; the event (`mine`) too. Span blo's part comes from its first
    -- candidate later than lo; span bhi's from its field unless that extreme is later
    -- than t (an event before the entity's newest), when its entries up to t are read.
    local function extreme(a, g, win, j, lo, ilo, hi, mine)
      local bitg = g.bit
      local kind, s = g.items[j][1], g.items[j][2]
      local span = win.xspan
      local blo, bhi = fdiv(lo, span), fdiv(t, span)
      local function scan(from, to)
        need(from, to)
        for i = from, to do
          local txt = in_group(i, bitg) and value_of(i, s)
          if txt then offer_text(a, j, kind, txt, entry_t(i), ARR[i]) end
        end
      end
      if bhi - blo < 2 then
        scan(ilo + 1, hi)
      else
        local m = xkept(g, win, kind, j, s, blo, bhi)
        if m[3] then offer(a, j, kind, m[5], tonumber(m[5]), m[3], m[4]) end
        local c = 6
        while m[c] and m[c] <= lo do c = c + 3 end
        if m[c] then offer(a, j, kind, m[c + 2], tonumber(m[c + 2]), m[c], m[c + 1]) end
        -- the top span's extreme is the window's part of it unless it is later than t
        local h = xget(win.xtags[j] .. bhi)
        if h and (hi == N or h[1] <= t) then
          offer(a, j, kind, h[3], tonumber(h[3]), h[1], h[2])
        elseif h then
          scan(last_at_or_before(bhi * span - 1) + 1, hi)
        end
      end
      if mine and EV[s] then offer_text(a, j, kind, EV[s], t, LAST) end
    end

    -- ---------------------------------------------------------------- running states

    -- the count of distinct key dk in a running distinct set (state st of window win,
    -- item j): a table in the blob, hash fields in a paged entity
    local function dget(st, win, j, dk)
      if not paged then return st[2][dk] or 0 end
      local f = win.tags[j] .. dk
      local v = DCACHE[f]
      if v == nil then
        v = tonumber(redis.call('HGET', own, f)) or 0
        DCACHE[f] = v
      end
      return v
    end

    local function dset(st, win, j, dk, v)
      if not paged then
        if v == 0 then st[2][dk] = nil else st[2][dk] = v end
        return
      end
      local f = win.tags[j] .. dk
      DCACHE[f] = v
      DDIRTY[f] = true
    end

    -- entry i (0: the event) into (sign 1) or out of (sign -1) a window's running state
    local function run_entry(ws, g, win, i, sign)
      ws[2] = ws[2] + sign
      local items, run = g.items, win.run
      for x = 1, #run do
        local j = run[x]
        local it = items[j]
        local val = value_of(i, it[2])
        if val then
          local st = ws[2 + j]
          if it[1] == 'q' then
            qadd(st, val, it[3], sign)
          else
            local dk = dkey(val)
            local old = dget(st, win, j, dk)
            local new = old + sign
            dset(st, win, j, dk, new)
            if old == 0 then st[1] = st[1] + 1 elseif new == 0 then st[1] = st[1] - 1 end
          end
        end
      end
    end

    local function run_range(ws, g, win, from, to, sign)
      local bitg = g.bit
      need(from, to)
      for i = from, to do
        if in_group(i, bitg) then run_entry(ws, g, win, i, sign) end
      end
    end

    -- raise a window's bound B to newB, taking out the entries in (B, newB]
    local function advance(g, win, ws, newB)
      local B = ws[1]
      if newB <= B then return end
      run_range(ws, g, win, last_at_or_before(B) + 1, last_at_or_before(newB), -1)
      ws[1] = newB
    end

    local function run_build(maxts)
      RUN = {}
      for g = 1, #GROUPS do
        local grp = GROUPS[g]
        if not grp.tiled then
          local wins, items = grp.wins, grp.items
          local states = {}
          for w = 1, #wins do
            local win = wins[w]
            local ws = {maxts - L - win.w, 0}
            for j = 1, #items do ws[2 + j] = 0 end
            for x = 1, #win.run do
              local j = win.run[x]
              if items[j][1] == 'q' then
                ws[2 + j] = qstate()
              elseif paged then
                ws[2 + j] = {0}
              else
                ws[2 + j] = {0, {}}
              end
            end
            run_range(ws, grp, win, last_at_or_before(ws[1]) + 1, N, 1)
            states[w] = ws
          end
          RUN[grp.hx] = states
        end
      end
      if paged then
        XLO, XCACHE, XDIRTY = {}, {}, {}
        xforget()
        for g = 1, #GROUPS do
          local grp = GROUPS[g]
          if not grp.tiled then xadd(grp, maxts, false) end
        end
        xfloor(maxts)
      end
    end

    -- no event that is not late reads below maxts - L - W: raise every bound to there
    local function run_floor(maxts)
      for g = 1, #GROUPS do
        local grp = GROUPS[g]
        if not grp.tiled then
          local states, wins = RUN[grp.hx], grp.wins
          for w = 1, #wins do advance(grp, wins[w], states[w], maxts - L - wins[w].w) end
        end
      end
      if paged and XLO then xfloor(maxts) end
    end

    -- the event, being stored, into the running states of its groups
    local function run_touch()
      for g = 1, #GROUPS do
        local grp = GROUPS[g]
        if not grp.tiled and band(pmask, grp.bit) ~= 0 then
          local states, wins = RUN[grp.hx], grp.wins
          for w = 1, #wins do
            local ws = states[w]
            if t > ws[1] then run_entry(ws, grp, wins[w], 0, 1) end
          end
        end
      end
    end

    -- ---------------------------------------------------------------- closed tiles

    -- A paged entity keeps the tiles of a tiled group of counts and sums (g.sub) that no
    -- event can change any more in its hash, field 't<ti>|<idx>' (msgpack of the tile):
    -- a stored event has t >= m - L (m: its newest time, or the slowest clock if lower),
    -- so tiles below c = floor((m - L) / H) are *closed*; the open ones stay in TILES.
    -- TS[ti] = {tlo, c, lows, sums}: the lowest closed tile kept, c, and per window w
    -- the running sum (a tile: {hi, n, item states}) of the closed tiles lows[w]..hi.
    -- An event's window is then the event, its open tiles and that running sum, moved to
    -- the window's closed tiles (a tile in or out as the window passes an hour): what a
    -- call reads and writes does not grow with the window's number of tiles.

    local function tkey(ti, idx) return 't' .. ti .. '|' .. idx end

    -- closed tile idx of group ti (false: none)
    local function tget(ti, idx)
      local f = tkey(ti, idx)
      local tile = TCACHE[f]
      if tile == nil then
        local raw = redis.call('HGET', own, f)
        tile = raw and cmsgpack.unpack(raw) or false
        TCACHE[f] = tile
      end
      return tile
    end

    -- tile into (sign 1) or out of (sign -1) running sum S
    local function tmerge(S, items, tile, sign)
      if not tile then return end
      S[2] = S[2] + sign * tile[2]
      for j = 1, #items do qmerge(S[2 + j], tile[2 + j], sign) end
    end

    -- window w's running sum of group g moved to the closed tiles a..b
    local function tmove(g, w, a, b)
      local st, items = TS[g.ti], g.items
      local lows, sums = st[3], st[4]
      local S = sums[w]
      if not S then
        S = newtile(items, a - 1)
        lows[w], sums[w] = a, S
      end
      while S[1] < b do S[1] = S[1] + 1; tmerge(S, items, tget(g.ti, S[1]), 1) end
      while S[1] > b do tmerge(S, items, tget(g.ti, S[1]), -1); S[1] = S[1] - 1 end
      while lows[w] < a do tmerge(S, items, tget(g.ti, lows[w]), -1); lows[w] = lows[w] + 1 end
      while lows[w] > a do lows[w] = lows[w] - 1; tmerge(S, items, tget(g.ti, lows[w]), 1) end
      return S
    end

    -- open tiles below c = floor((m - L) / H) close (into fields); closed tiles below
    -- floor((m - L - Wmax) / H) go, out of the running sums first
    local function tclose(g, m)
      local ti, hop, items = g.ti, g.hop, g.items
      local st = TS[ti]
      local c, keep = fdiv(m - L, hop), fdiv(m - L - g.wmax, hop)
      local open = TILES[ti]
      while #open > 0 and open[1][1] < c do
        local tile = tremove(open, 1)
        local f = tkey(ti, tile[1])
        TCACHE[f], TDIRTY[f] = tile, true
      end
      if c > st[2] then st[2] = c end
      local lows, sums = st[3], st[4]
      for w = 1, #g.wins do
        local S = sums[w]
        if S then
          while lows[w] < keep and lows[w] <= S[1] do
            tmerge(S, items, tget(ti, lows[w]), -1)
            lows[w] = lows[w] + 1
          end
          if lows[w] < keep then lows[w], S[1] = keep, keep - 1 end
        end
      end
      if keep > st[1] then
        local top = keep - 1
        if top > st[2] - 1 then top = st[2] - 1 end
        for idx = st[1], top do
          local f = tkey(ti, idx)
          TCACHE[f], TDIRTY[f] = false, true
        end
        st[1] = keep
      end
    end

    -- every tile of group g, closed and open, ascending (a late event's, a peek's, and
    -- the entity's when it goes back to its bucket)
    local function all_tiles(g)
      local st, out = TS[g.ti], {}
      local fields = {}
      for idx = st[1], st[2] - 1 do fields[#fields + 1] = tkey(g.ti, idx) end
      for from = 1, #fields, 512 do
        local to = from + 511
        if to > #fields then to = #fields end
        local got = redis.call('HMGET', own, unpack(fields, from, to))
        for x = from, to do
          local tile = TCACHE[fields[x]]
          if tile == nil then
            local raw = got[x - from + 1]
            tile = raw and cmsgpack.unpack(raw) or false
          end
          if tile then out[#out + 1] = tile end
        end
      end
      for _, tile in ipairs(TILES[g.ti]) do out[#out + 1] = tile end
      return out
    end

    -- tiles of the sub groups of an entity being paged: closed ones to fields
    local function tpage(m)
      TS, TCACHE, TDIRTY = {}, {}, {}
      for g = 1, #GROUPS do
        local grp = GROUPS[g]
        if grp.tiled and grp.sub then
          local low = fdiv(m - L - grp.wmax, grp.hop)
          TS[grp.ti] = {low, low, {}, {}}
          tclose(grp, m)
        end
      end
    end

    -- a group's event values by its running sums (an event that is not late): per
    -- window, the event, its own tile whole less its entries later than t, the open
    -- tiles in the window, and the running sum of its closed ones
    local function tiled_running(g, out, hi)
      local items, wins, hop, ti = g.items, g.wins, g.hop, g.ti
      local ownt = fdiv(t, hop)
      local c = TS[ti][2]
      local later = newacc(items)
      local stop = (ownt + 1) * hop
      need(hi + 1, N)
      for i = hi + 1, N do
        if entry_t(i) >= stop then break end
        if band(entry_mask(i), g.bit) ~= 0 then acc_add(later, items, i, entry_t(i), i) end
      end
      for w = 1, #wins do
        local a = newacc(items)
        if band(pmask, g.bit) ~= 0 then acc_add(a, items, 0, t, LAST) end
        a.n = a.n - later.n
        for j = 1, #items do qmerge(a.q[j], later.q[j], -1) end
        local lb = fdiv(t - wins[w].w, hop)
        for _, tile in ipairs(TILES[ti]) do
          if tile[1] >= lb and tile[1] <= ownt then acc_merge(a, items, tile) end
        end
        if lb <= c - 1 then acc_merge(a, items, tmove(g, w, lb, c - 1)) end
        emit(a, wins[w], out)
      end
    end

    -- ---------------------------------------------------------------- values

    -- history group by one backward scan: stored x with lo - W < t(x) <= t, plus the
    -- event; lo = t, or G - L for a late event (its floor G - L - W)
    local function history_values(g, out, lo_base, hi)
      local items, wins = g.items, g.wins
      if paged then need(last_at_or_before(lo_base - wins[#wins].w) + 1, hi) end
      local a = newacc(items)
      if band(pmask, g.bit) ~= 0 then acc_add(a, items, 0, t, LAST) end
      local nw, j = #wins, 1
      local lo = lo_base - wins[1].w
      local bitg = g.bit
      for i = hi, 1, -1 do
        local tx = entry_t(i)
        while tx <= lo do
          emit(a, wins[j], out)
          j = j + 1
          if j > nw then return end
          lo = lo_base - wins[j].w
        end
        if in_group(i, bitg) then acc_add(a, items, i, tx, i) end
      end
      for w = j, nw do emit(a, wins[w], out) end
    end

    -- adjust an accumulator built from a running state by entries from..to (sign +-1);
    -- distinct keys go to `delta`
    local function run_adjust(a, delta, g, win, from, to, sign)
      local items, run, bitg = g.items, win.run, g.bit
      if from > 0 then need(from, to) end
      for i = from, to do
        if i == 0 or in_group(i, bitg) then
          a.n = a.n + sign
          for x = 1, #run do
            local j = run[x]
            local it = items[j]
            local val = value_of(i, it[2])
            if val then
              if it[1] == 'q' then
                qadd(a.q[j], val, it[3], sign)
              else
                local dk = dkey(val)
                local dj = delta[j]
                dj[dk] = (dj[dk] or 0) + sign
              end
            end
          end
        end
      end
    end

    -- one window of a history group from its running state: count, sums and distinct
    -- counts are the state's (entries later than B) plus the entries in (lo, B] minus
    -- those later than t; first/last come from the window's edges. A window holding
    -- fewer entries than those corrections, or with min/max, is scanned instead.
    local function run_window(g, win, ws, out, hi, n)
      local items, bitg = g.items, g.bit
      local lo = t - win.w
      if lo > ws[1] then advance(g, win, ws, lo) end
      local ilo = last_at_or_before(lo)
      local iB = last_at_or_before(ws[1])
      local mine = band(pmask, bitg) ~= 0
      local a
      local spans = paged and XLO
      if (win.scan and not spans) or hi - ilo <= (iB - ilo) + (n - hi) then
        need(ilo + 1, hi)
        a = newacc(items)
        if mine then acc_add(a, items, 0, t, LAST) end
        for i = hi, ilo + 1, -1 do
          if in_group(i, bitg) then acc_add(a, items, i, entry_t(i), i) end
        end
        emit(a, win, out)
        return
      end
      a = {n = ws[2], q = {}, nd = {}, ht = {}, hv = {}, ho = {}, hr = {}}
      local delta = {}
      local run = win.run
      for x = 1, #run do
        local j = run[x]
        if items[j][1] == 'q' then a.q[j] = qcopy(ws[2 + j]) else delta[j] = {} end
      end
      run_adjust(a, delta, g, win, ilo + 1, iB, 1)
      run_adjust(a, delta, g, win, hi + 1, n, -1)
      if mine then run_adjust(a, delta, g, win, 0, 0, 1) end
      for x = 1, #run do
        local j = run[x]
        local dj = delta[j]
        if dj then
          local st = ws[2 + j]
          local nd = st[1]
          for dk, dv in pairs(dj) do
            local old = dget(st, win, j, dk)
            local new = old + dv
            if old == 0 and new > 0 then nd = nd + 1 elseif old > 0 and new == 0 then nd = nd - 1 end
          end
          a.nd[j] = nd
        end
      end
      local edge = win.edge
      for x = 1, #edge do
        local j = edge[x]
        local kind, s = items[j][1], items[j][2]
        if kind == 'mn' or kind == 'mx' then
          extreme(a, g, win, j, lo, ilo, hi, mine)
        elseif kind == 'fi' then
          for i = ilo + 1, hi do
            local txt = in_group(i, bitg) and value_of(i, s)
            if txt then offer_text(a, j, kind, txt, entry_t(i), i); break end
          end
          if mine and EV[s] then offer_text(a, j, kind, EV[s], t, LAST) end
        else -- 'la': the event is the latest of its window when it has a value
          if not (mine and EV[s] and offer_text(a, j, kind, EV[s], t, LAST)) then
            for i = hi, ilo + 1, -1 do
              local txt = in_group(i, bitg) and value_of(i, s)
              if txt then offer_text(a, j, kind, txt, entry_t(i), i); break end
            end
          end
        end
      end
      emit(a, win, out)
    end

    -- tiled group: whole tiles from floor((lo - W)/H), then the event's own tile: its raw
    -- entries up to t, or (scored as late) the whole tile
    local function tiled_values(g, tiles, out, whole, lo_base, hi)
      local items, wins, hop = g.items, g.wins, g.hop
      local a = newacc(items)
      if band(pmask, g.bit) ~= 0 then acc_add(a, items, 0, t, LAST) end
      local ownt = fdiv(t, hop)
      local top = ownt
      if not whole and g.sub then
        -- counts and sums: the event's own tile whole, less its entries later than t
        -- (come earlier with a later time; usually none), so a busy tile is not scanned
        local stop = (ownt + 1) * hop
        need(hi + 1, N)
        for i = hi + 1, N do
          if entry_t(i) >= stop then break end
          if band(entry_mask(i), g.bit) ~= 0 then
            a.n = a.n - 1
            for j = 1, #items do
              local val = value_of(i, items[j][2])
              if val then qadd(a.q[j], val, items[j][3], -1) end
            end
          end
        end
      elseif not whole then
        top = ownt - 1
        local start = ownt * hop
        if paged then need(last_at_or_before(start - 1) + 1, hi) end
        for i = hi, 1, -1 do
          local tx = entry_t(i)
          if tx < start then break end
          if band(entry_mask(i), g.bit) ~= 0 then acc_add(a, items, i, tx, i) end
        end
      end
      local nw, j = #wins, 1
      local lb = fdiv(lo_base - wins[1].w, hop)
      for p = #tiles, 1, -1 do
        local tile = tiles[p]
        local idx = tile[1]
        if idx <= top then
          while idx < lb do
            emit(a, wins[j], out)
            j = j + 1
            if j > nw then return end
            lb = fdiv(lo_base - wins[j].w, hop)
          end
          acc_merge(a, items, tile)
        end
      end
      for w = j, nw do emit(a, wins[w], out) end
    end

    -- every value of the entity for the event: over the whole windows, or (`floored`,
    -- a late event) above the floor G - L - W, by whole tiles for tiled groups
    local function all_values(floored)
      local out = {}
      local lo_base = t
      if floored and G - L > t then lo_base = G - L end
      local hi = last_at_or_before(t)
      local n = N
      for g = 1, #GROUPS do
        local grp = GROUPS[g]
        if grp.tiled and TS and TS[grp.ti] then
          if floored then
            tiled_values(grp, all_tiles(grp), out, true, lo_base, hi)
          else
            tiled_running(grp, out, hi)
          end
        elseif grp.tiled then
          tiled_values(grp, TILES[grp.ti], out, floored, lo_base, hi)
        elseif RUN and not floored then
          local states, wins = RUN[grp.hx], grp.wins
          for w = 1, #wins do run_window(grp, wins[w], states[w], out, hi, n) end
        else
          history_values(grp, out, lo_base, hi)
        end
      end
      return out
    end

    -- ---------------------------------------------------------------- storing

    local function tile_add(g, tiles, i, tx)
      local items = g.items
      local idx = fdiv(tx, g.hop)
      local p = #tiles
      while p >= 1 and tiles[p][1] > idx do p = p - 1 end
      local tile
      if p >= 1 and tiles[p][1] == idx then
        tile = tiles[p]
      else
        tile = newtile(items, idx)
        tinsert(tiles, p + 1, tile)
      end
      tile[2] = tile[2] + 1
      for j = 1, #items do
        local it = items[j]
        local val = value_of(i, it[2])
        if val then
          local kind = it[1]
          local st = tile[2 + j]
          if kind == 'q' then
            qadd(st, val, it[3], 1)
            qnormal(st)
          else
            local r, d = parts(val)
            if kind == 'd' then
              st[d or r] = 1
            else
              local take = not st
              if not take then
                if kind == 'mn' or kind == 'mx' then
                  local v, hv = tonumber(r), tonumber(st[2])
                  if v ~= hv then
                    if kind == 'mn' then take = v < hv else take = v > hv end
                  else
                    take = tx < st[1]
                  end
                elseif kind == 'fi' then
                  take = tx < st[1]
                else
                  take = tx >= st[1]
                end
              end
              if take then tile[2 + j] = {tx, r} end
            end
          end
        end
      end
    end

    -- guard records keep their times relative to base too
    local function shift_ring(newbase)
      for at = 2, #RING, RSTRIDE do RING[at] = RING[at] + base - newbase end
    end

    -- insert entry `row` after entry hi
    local function insert_row(hi, row)
      AT = {}
      N = N + 1
      if paged then
        local tx = base + row[1]
        redis.call('ZADD', zkey, tx, member(row))
        if not ZMAX or tx > ZMAX then ZMAX = tx end
        paged_entries()
        return
      end
      local at = hi * STRIDE
      for f = (N - 1) * STRIDE, at + 1, -1 do E[f + STRIDE] = E[f] end
      for f = 1, STRIDE do E[at + f] = row[f] end
    end

    local function store(hi)
      if N == 0 and not paged then
        shift_ring(t)
        base = t
      end
      local row = {t - base}
      if MASKED then row[2] = pmask end
      for s = 1, NSLOT do row[#row + 1] = EV[s] end
      EVSEQ = NEXT
      insert_row(hi, row)
      if RUN then run_touch() end
      if paged and RUN and XLO then
        for g = 1, #GROUPS do
          local grp = GROUPS[g]
          if not grp.tiled and band(pmask, grp.bit) ~= 0 then xadd(grp, nil, true) end
        end
      end
      for g = 1, #GROUPS do
        local grp = GROUPS[g]
        if grp.tiled and band(pmask, grp.bit) ~= 0 then tile_add(grp, TILES[grp.ti], 0, t) end
      end
    end

    -- drop what no event can read any more (maxts - L - W of each group), rebase times
    -- `low`, lowered to just past the oldest entry a running state still holds
    local function below_running(low)
      if RUN then
        for h = 1, #RUN do
          local states = RUN[h]
          for w = 1, #states do
            if states[w][1] + 1 < low then low = states[w][1] + 1 end
          end
        end
      end
      return low
    end

    local function trim(maxts)
      local thr, top = {}, -LAST
      for g = 1, #GROUPS do
        local grp = GROUPS[g]
        local x
        if grp.tiled then
          x = fdiv(maxts - L, grp.hop) * grp.hop
          local tiles = TILES[grp.ti]
          local keep = fdiv(maxts - L - grp.wmax, grp.hop)
          while #tiles > 0 and tiles[1][1] < keep do tremove(tiles, 1) end
          if TS and TS[grp.ti] then tclose(grp, maxts) end
        else
          x = maxts - L - grp.wmax + 1
        end
        thr[g] = x
        if x > top then top = x end
      end
      if paged then
        -- entries below what every group keeps (and no running state holds) go when it
        -- is saved (drop_low)
        local low = LAST
        for g = 1, #GROUPS do
          if thr[g] < low then low = thr[g] end
        end
        thr_low = low
        if RUN then run_floor(maxts) end
        return
      end
      if RUN then run_floor(maxts) end
      local n = N
      local i = 1
      local dropped = false
      local keep = {}
      while i <= n do
        local tx = entry_t(i)
        if tx >= top then break end
        local mask = entry_mask(i)
        local kept = false
        for g = 1, #GROUPS do
          if band(mask, GROUPS[g].bit) ~= 0 and tx >= thr[g] then kept = true; break end
        end
        keep[i] = kept
        if not kept then dropped = true end
        i = i + 1
      end
      if not dropped and (n == 0 or entry_t(1) - base < 2147483648) then return end
      local first = i
      for x = 1, i - 1 do
        if keep[x] then first = x; break end
      end
      local newbase = base
      if first <= n then newbase = entry_t(first) end
      local R = {}
      local m = 0
      for x = 1, n do
        if x >= i or keep[x] then
          local at = (x - 1) * STRIDE
          m = m + 1
          R[m] = base + E[at + 1] - newbase
          for f = 2, STRIDE do m = m + 1; R[m] = E[at + f] end
        end
      end
      shift_ring(newbase)
      E, base, N, AT = R, newbase, m / STRIDE, {}
    end

    -- ---------------------------------------------------------------- guard records

    -- a guard record, unpacked: {digest, t, late (0/1), values}
    local function find_record()
      for r = #RING / RSTRIDE, 1, -1 do
        local at = (r - 1) * RSTRIDE
        if RING[at + 1] == digest then
          local values = {}
          for x = 1, NOUT do values[x] = RING[at + 3 + x] end
          return {digest, base + RING[at + 2], band(RING[at + 3], 1), values}
        end
      end
      return nil
    end

    -- the ring keeps the last DEPTH records, one per digest, oldest first
    local function remember(rec)
      local R, m = {}, 0
      if DEPTH > 1 then
        local keep = DEPTH - 1
        for r = #RING / RSTRIDE, 1, -1 do
          if keep == 0 then break end
          if RING[(r - 1) * RSTRIDE + 1] ~= digest then
            keep = keep - 1
            local at = (r - 1) * RSTRIDE
            for f = RSTRIDE, 1, -1 do R[m + f] = RING[at + f] end
            m = m + RSTRIDE
          end
        end
        -- R holds records newest first: put them back in order
        local n = m / RSTRIDE
        for r = 1, floor(n / 2) do
          local a, b = (r - 1) * RSTRIDE, (n - r) * RSTRIDE
          for f = 1, RSTRIDE do R[a + f], R[b + f] = R[b + f], R[a + f] end
        end
      end
      if DEPTH > 0 then
        R[m + 1] = rec[1]
        R[m + 2] = rec[2] - base
        R[m + 3] = rec[3]
        local values = rec[4]
        for x = 1, NOUT do R[m + 3 + x] = values[x] end
      end
      RING = R
    end

    -- {late, from the guard, values}; a peek puts 'holds anything' in the first place
    local function reply(first, guarded, values)
      local res = {first, guarded}
      for x = 1, NOUT do res[2 + x] = values[x] end
      return res
    end

    -- ---------------------------------------------------------------- loading

    local function load()
      packed = redis.call('HGET', bucket, field)
      in_bucket = packed ~= false
      paged, was_paged, RUN, thr_low, AT, XLO, TS = false, false, nil, nil, {}, nil, nil
      if not in_bucket then
        packed = redis.call('HGET', own, 'h')
        paged = packed ~= false
      end
      if not packed then
        base, E, TILES, RING, N = t, {}, {}, {}, 0
        for g = 1, P.NTILED do TILES[g] = {} end
        return
      end
      local header, blob = cmsgpack.unpack(packed)
      base, TILES, RING, RUN = header - blob[1], blob[3], blob[4], blob[5]
      if not paged then
        E = blob[2]
        N = #E / STRIDE
        return
      end
      was_paged = true
      NEXT, XLO, DCACHE, DDIRTY, XCACHE, XDIRTY = blob[6], blob[7], {}, {}, {}, {}
      TS, TCACHE, TDIRTY = blob[8], {}, {}
      if XLO and blob[9] ~= XMARK then xforget() end
      N = redis.call('ZCARD', zkey)
      ZMAX = nil
      if N > 0 then
        ZMAX = tonumber(redis.call('ZRANGE', zkey, -1, -1, 'WITHSCORES')[2])
      end
      paged_entries()
    end

    -- forget everything but the guard records (and the keys it was in, at save)
    local function forget()
      E, N, RUN, paged, AT, XLO, TS = {}, 0, nil, false, {}, nil, nil
      for g = 1, #TILES do TILES[g] = {} end
    end

    -- ---------------------------------------------------------------- saving

    -- on every write, a few sampled siblings in the bucket holding nothing newer than
    -- G - L - IDLE are removed: IDLE = max(Rmax(B), Wmax(scene)), so no on-time event
    -- reads their entries and no retry within the idempotency horizon needs their guard
    local function sweep()
      if not F or SWEEP == 0 then return end
      local idle = F - L - IDLE
      local pairs_ = redis.call('HRANDFIELD', bucket, SWEEP, 'WITHVALUES')
      for x = 1, #pairs_, 2 do
        if pairs_[x] ~= field then
          local _, header = cmsgpack.unpack_one(pairs_[x + 1])
          if header <= idle then redis.call('HDEL', bucket, pairs_[x]) end
        end
      end
    end

    -- a paged entity as one flat entries array (every block read)
    local function flat_entries()
      local F = {}
      for x = 1, N * STRIDE do F[x] = E[x] end
      return F
    end

    -- below this time, entries of a paged entity go when it is saved: what trim drops
    -- that no running state holds (nil: nothing goes)
    local function drop_low()
      if not thr_low then return nil end
      return below_running(thr_low)
    end

    -- a paged entity: entries below drop_low() go once they are BLOCK or an eighth of
    -- it (and two or more: one command for several), then its header and the distinct
    -- counts that changed
    local function save_paged(header)
      local low = drop_low()
      if low then
        local below = '(' .. fmt('%d', low)
        local dead = redis.call('ZCOUNT', zkey, '-inf', below)
        if dead >= 2 and (dead >= BLOCK or dead * 8 >= N) then
          redis.call('ZREMRANGEBYSCORE', zkey, '-inf', below)
        end
      end
      shift_ring(header)
      base = header
      if not RUN then XLO = nil end
      local sets, dels = {'h', cmsgpack.pack(header, {0, false, TILES, RING, RUN, NEXT, XLO,
                                                      TS or false, XMARK})}, {}
      if TS then
        for f in pairs(TDIRTY) do
          local tile = TCACHE[f]
          if tile then
            sets[#sets + 1] = f
            sets[#sets + 1] = cmsgpack.pack(tile)
          else
            dels[#dels + 1] = f
          end
        end
      end
      if XLO then
        for f in pairs(XDIRTY) do
          local h = XCACHE[f]
          if h then
            sets[#sets + 1] = f
            sets[#sets + 1] = cmsgpack.pack(h)
          else
            dels[#dels + 1] = f
          end
        end
      end
      for f in pairs(DDIRTY) do
        local v = DCACHE[f]
        if v == 0 then
          dels[#dels + 1] = f
        else
          sets[#sets + 1] = f
          sets[#sets + 1] = v
        end
      end
      write('HDEL', own, dels)
      write('HSET', own, sets)
      keep_alive(own, ttl)
      keep_alive(zkey, ttl)
    end

    -- into its bucket field (its own keys go)
    local function save_small(data)
      redis.call('HSET', bucket, field, data)
      keep_alive(bucket, ttl)
      if was_paged then redis.call('DEL', own, zkey) end
      sweep()
    end

    local function save()
      local header = maxts_now()
      for r = #RING / RSTRIDE, 1, -1 do
        local rt = base + RING[(r - 1) * RSTRIDE + 2]
        if not header or rt > header then header = rt end
      end
      local empty = header == nil
      if empty then
        for g = 1, #TILES do
          if #TILES[g] > 0 then empty = false; break end
        end
      end
      if empty then
        if in_bucket then redis.call('HDEL', bucket, field) end
        if was_paged then redis.call('DEL', own, zkey) end
        return
      end
      header = header or base
      if paged and N <= BLOCK then
        -- small again when it fits in three quarters of a field (not back and forth)
        local tiles = TILES
        if TS then
          tiles = {}
          for g = 1, #GROUPS do
            local grp = GROUPS[g]
            if grp.tiled then
              tiles[grp.ti] = TS[grp.ti] and all_tiles(grp) or TILES[grp.ti]
            end
          end
        end
        local data = cmsgpack.pack(header, {header - base, flat_entries(), tiles, RING})
        if #data * 4 <= small * 3 then
          save_small(data)
          return
        end
      end
      if not paged then
        if RUN and N < RUNMIN / 2 then RUN = nil end
        local blob
        if RUN then
          blob = {header - base, E, TILES, RING, RUN}
        else
          blob = {header - base, E, TILES, RING}
        end
        local data = cmsgpack.pack(header, blob)
        if #data <= small then
          save_small(data)
          return
        end
        -- too big for its field: paged, its entries into its sorted set
        if in_bucket then redis.call('HDEL', bucket, field) end
        if was_paged then redis.call('DEL', own, zkey) end
        paged, RUN, NEXT, DCACHE, DDIRTY, XLO = true, nil, 1, {}, {}, nil
        local items = {}
        for i = 1, N do
          local at = (i - 1) * STRIDE
          local row = {}
          for f = 1, STRIDE do row[f] = E[at + f] end
          items[#items + 1] = base + row[1]
          items[#items + 1] = member(row)
        end
        write('ZADD', zkey, items)
        ZMAX = N > 0 and base + E[(N - 1) * STRIDE + 1] or nil
        local m = maxts_now()
        if m and F and F < m then m = F end
        if m then tpage(m) end
      end
      save_paged(header)
      sweep()
    end

    -- ---------------------------------------------------------------- the call

    -- forgetting: a key whose newest entry is at or before G - L - Rmax(B) is read by no
    -- event from now on (an on-time one starts after it, a late one's floor is above it)
    local function forget_idle()
      local maxts = maxts_now()
      if maxts and F and maxts <= F - L - RMAX then
        forget()
        return nil
      end
      return maxts
    end

    return function(keys, args)
      bucket, own, zkey = keys[1], keys[2], keys[3]
      mode = args[1]
      t = tonumber(args[2])
      G = tonumber(args[3])
      late = args[4] == '1'
      horizon = tonumber(args[5])
      digest = args[6]
      pmask = tonumber(args[7])
      ttl = tonumber(args[8])
      field = args[9]
      small = tonumber(args[10])
      F = tonumber(args[11])
      for s = 1, NSLOT do
        local txt = args[SLOT0 + s]
        if txt == nil or txt == '' then EV[s] = false
        elseif QSLOT[s] then EV[s] = micro(txt) else EV[s] = txt end
      end
      load()

      if mode == 'p' then
        -- peek: what an event at t (the scene clock) that no filter lets in would read;
        -- nothing is stored or remembered. The first reply value says whether the key
        -- holds anything (1) or is unknown or forgotten (0).
        local maxts = forget_idle()
        RUN = nil  -- running totals are kept for the key's newest time, not for G
        return reply(maxts and 1 or 0, 0, all_values(false))
      end

      local rec = find_record()
      if rec and (horizon == nil or rec[2] > horizon) then return reply(rec[3], 1, rec[4]) end

      local maxts = forget_idle()
      if maxts then
        -- what no event can read: behind the key's newest, and behind the slowest clock
        -- (a key read by several partitions keeps what the slowest one can still read);
        -- running states and spans start there too
        local floor_at = (F and F < maxts) and F or maxts
        trim(floor_at)
        if not RUN and NHIST > 0 and N >= RUNMIN and N > 0 then run_build(floor_at) end
      end
      local values = all_values(late)
      local stored = not late and pmask ~= 0
      if stored then store(last_at_or_before(t)) end
      local flag = late and 1 or 0
      remember({digest, t, flag, values})
      if stored or DEPTH > 0 or packed then save() end
      return reply(flag, 0, values)
    end
  end

  -- ------------------------------------------------------------------ scene clock

  -- The clock key (a hash, riskengine/state/redis/clock.py) holds for every scene of the
  -- prefix: 'format' (the layout of the state), 'lsn' (the last LSN handed out) and
  -- 'G:<scene>' (the scene clock: the largest time of the accepted events that were not
  -- late).
  --
  -- One event's clock step, atomically, FCALL <clock> 1 <clock key> <clock name> <t> <L>
  -- <format> <floor> <scene>: the next LSN (above `floor`, the caller's last one, should
  -- Redis have come back without it), G before the event, and whether the event is late
  -- (t < G - L); G rises to t when the event is not late. LSN order is thus the order in
  -- which G was taken. Reply: {lsn, G before (false: none yet), late (0/1), the slowest
  -- clock of the scene's other partitions (false: none)}. The format (the layout and
  -- the bucket count) is written when missing; another one than the caller's (the state
  -- was emptied and made again by a process of another count) is an error reply that
  -- changes nothing: the caller checks the state again (clock.py, `SharedClock.check`).
  --
  -- args[1] is the clock's name: the scene, or '<scene>|<partition>' for a stream worker's
  -- partition (one clock each), args[6] the scene. The reply's fourth value is the
  -- slowest clock of the scene's other partitions (false: none): keys are forgotten by
  -- the slowest clock, since a key can be read by events of several partitions.
  local FORMAT_CHANGED = 'RISKENGINE_FORMAT the clock key holds another layout: '
  local function clock(keys, args)
    local key, at = keys[1], 'G:' .. args[1]
    local t, L, low = tonumber(args[2]), tonumber(args[3]), tonumber(args[5])
    local layout = redis.call('HGET', key, 'format')
    if not layout then
      redis.call('HSET', key, 'format', args[4])
    elseif layout ~= args[4] then  -- written since this process checked it: nothing is
      return redis.error_reply(FORMAT_CHANGED .. layout)  -- changed, the caller checks
    end
    local lsn = redis.call('HINCRBY', key, 'lsn', 1)
    if lsn <= low then
      lsn = low + 1
      redis.call('HSET', key, 'lsn', fmt('%d', lsn))
    end
    local g = redis.call('HGET', key, at)
    g = g and tonumber(g)
    local late = 0
    if g and t < g - L then
      late = 1
    elseif not g or t > g then
      redis.call('HSET', key, at, args[2])
    end
    local others = false
    local marker = 'P:' .. args[6]  -- set once the scene has partition clocks
    if args[1] ~= args[6] and not g then redis.call('HSET', key, marker, '1') end
    if args[1] ~= args[6] or redis.call('HEXISTS', key, marker) == 1 then
      local scene, part = 'G:' .. args[6], 'G:' .. args[6] .. '|'
      local all = redis.call('HGETALL', key)
      for i = 1, #all, 2 do
        local name = all[i]
        if name ~= at and (name == scene or string.sub(name, 1, #part) == part) then
          local v = tonumber(all[i + 1])
          if not others or v < others then others = v end
        end
      end
    end
    return {lsn, g or false, late, others}
  end

  -- FCALL <unclock> 1 <clock key> <scene> <t> <G before ('' none)>: the step of an event
  -- the caller then found to be a duplicate raised G to t; G goes back, unless another
  -- event moved it since. Reply: 1 when G went back.
  local function unclock(keys, args)
    local at = 'G:' .. args[1]
    if redis.call('HGET', keys[1], at) ~= args[2] then return 0 end
    if args[3] == '' then
      redis.call('HDEL', keys[1], at)
    else
      redis.call('HSET', keys[1], at, args[3])
    end
    return 1
  end

  -- FCALL <recall> 1 <record key>: an idempotency record (riskengine/state/redis/
  -- idempotency.py), read in the same pipeline as the clock step
  local function recall(keys)
    return redis.call('GET', keys[1])
  end

  -- ------------------------------------------------------------------ inspection

  -- Sizes of one key of entity state, for stats: {entities, entries, tiles, guard
  -- records, running states, MEMORY USAGE}. args[1] the entry stride, args[2] the guard
  -- record stride of the entity's plan, args[3] '1' for a bucket, '0' for an own hash
  -- (keys[2]: its sorted set of entries, counted with it).
  local function inspect(keys, args)
    local values = {}
    local memory = redis.call('MEMORY', 'USAGE', keys[1]) or 0
    local entries, tiles = 0, 0
    if args[3] == '1' then
      values = redis.call('HVALS', keys[1])
    else
      local h = redis.call('HGET', keys[1], 'h')
      if h then values[1] = h end
      entries = redis.call('ZCARD', keys[2])
      for _, f in ipairs(redis.call('HKEYS', keys[1])) do
        if byte(f, 1) == 116 then tiles = tiles + 1 end  -- 't': a closed tile
      end
      memory = memory + (redis.call('MEMORY', 'USAGE', keys[2]) or 0)
    end
    local records, running = 0, 0
    for _, value in ipairs(values) do
      local _, blob = cmsgpack.unpack(value)
      if blob[2] then entries = entries + #blob[2] / tonumber(args[1]) end
      for _, group in ipairs(blob[3]) do tiles = tiles + #group end
      records = records + #blob[4] / tonumber(args[2])
      if blob[5] then running = running + 1 end
    end
    return {#values, entries, tiles, records, running, memory}
  end

  -- ------------------------------------------------------------------ sequence patterns

  -- One key of one sequence pattern (riskengine/patterns.py is the contract), as
  -- FCALL <pattern> 1 <key> kind t late G mask within keep max ttl digest times...
  -- kind 's' (a sequence; times: each step's count) or 'a' (an absence: mask bit 1 the
  -- first event, bit 2 the one that must follow); late 1 when the event is late (its
  -- clock step said so: t < G - L; it reads and changes nothing); G the scene clock
  -- after the event (max(G, t) unless late; '' for none), by which an idle key is
  -- forgotten before the event is read. The key holds
  -- msgpack {newest, arrivals, held, guard}: held is flat (t, arrival, mask) triples for
  -- a sequence, (t, arrival) pairs of open deadlines for an absence; guard the last two
  -- (digest, result) pairs, so a retried event gets its first answer and changes nothing.
  -- Reply: 1 when the pattern holds at this event, else 0.
  local function seq_holds(held, mask, t, within, times)
    local steps = #times
    if band(mask, 2 ^ (steps - 1)) == 0 then return 0 end
    local low, cand = t - within, {}
    for i = 1, #held, 3 do
      local tx = held[i]
      if tx > low and tx <= t then cand[#cand + 1] = {tx, held[i + 1], held[i + 2]} end
    end
    table.sort(cand, function(a, b)
      if a[1] ~= b[1] then return a[1] < b[1] end
      return a[2] < b[2]
    end)
    local i = 1
    for step = 1, steps do
      local bitv = 2 ^ (step - 1)
      local need = times[step]
      if step == steps then need = need - 1 end
      while need > 0 and i <= #cand do
        if band(cand[i][3], bitv) ~= 0 then need = need - 1 end
        i = i + 1
      end
      if need > 0 then return 0 end
    end
    return 1
  end

  local function keep_pairs(held, keep)
    local out = {}
    for i = 1, #held, 2 do
      if keep(held[i]) then out[#out + 1] = held[i]; out[#out + 1] = held[i + 1] end
    end
    return out
  end

  local function pattern(keys, args)
    local kind, t, late = args[1], tonumber(args[2]), args[3] == '1'
    local G, mask = tonumber(args[4]), tonumber(args[5])
    local within, keep = tonumber(args[6]), tonumber(args[7])
    local most, ttl, digest = tonumber(args[8]), tonumber(args[9]), args[10]
    local times = {}
    for x = 11, #args do times[#times + 1] = tonumber(args[x]) end
    local raw = redis.call('GET', keys[1])
    local st = raw and cmsgpack.unpack(raw) or nil
    if st then
      local guard = st[4]
      for i = 1, #guard, 2 do
        if guard[i] == digest then return guard[i + 1] end
      end
      if G and st[1] <= G - keep then st = nil end  -- idle long enough: forgotten
    end
    if not st then
      if mask == 0 or late then return 0 end
      st = {t, 0, {}, {}}
    end
    local held, result = st[3], 0
    if kind == 's' then
      result = seq_holds(held, mask, t, within, times)
    else
      if band(mask, 2) ~= 0 and not late then  -- closes the deadlines it falls within
        held = keep_pairs(held, function(a) return not (a < t and t <= a + within) end)
      end
      for i = 1, #held, 2 do
        if held[i] + within < t then result = 1 end
      end
      if result == 1 and not late then  -- each deadline fires once
        held = keep_pairs(held, function(a) return a + within >= t end)
      end
    end
    if late then return result end
    if t > st[1] then st[1] = t end
    local arrival = st[2] + 1
    st[2] = arrival
    local width = (kind == 's') and 3 or 2
    if kind == 's' and mask ~= 0 then
      held[#held + 1] = t; held[#held + 1] = arrival; held[#held + 1] = mask
    elseif kind ~= 's' and band(mask, 1) ~= 0 then
      held[#held + 1] = t; held[#held + 1] = arrival
    end
    local floor, first = st[1] - keep, 1
    while first <= #held and (held[first] <= floor or (#held - first + 1) / width > most) do
      first = first + width
    end
    if first > 1 then
      local rest = {}
      for i = first, #held do rest[#rest + 1] = held[i] end
      held = rest
    end
    st[3] = held
    local guard = st[4]
    guard[#guard + 1] = digest
    guard[#guard + 1] = result
    while #guard > 4 do table.remove(guard, 1); table.remove(guard, 1) end
    if raw and redis.call('PTTL', keys[1]) >= ttl then
      redis.call('SET', keys[1], cmsgpack.pack(st), 'KEEPTTL')
    else
      redis.call('SET', keys[1], cmsgpack.pack(st))
      keep_alive(keys[1], ttl)
    end
    return result
  end

  -- ------------------------------------------------------------------ one event

  -- The entity function of plan i of `plans`, built once: its own FCALL and `event`
  -- share it (every call sets all of its state first).
  local built = {}
  local function entity_at(plans, i)
    local call = built[i]
    if not call then
      call = entity(plans[i])
      built[i] = call
    end
    return call
  end

  -- the slowest of `own` (a clock, nil for none) and `others` (clock.py, Step.slowest)
  local function slowest(own, others)
    if own == nil then return others end
    if others and others < own then return others end
    return own
  end

  -- One event's whole step on one server, in one atomic call (riskengine/state/redis/
  -- backend.py): FCALL <event> <numkeys> <clock key> <record key> [<bucket> <own>]...
  -- [<pattern key>]... <clock name> <t> <L> <format> <floor> <scene> <span> <digest>
  -- <entities> <patterns> [<plan> <mask> <ttl> <field> <small> <slot>...]...
  -- [<kind> <mask> <within> <keep> <most> <ttl> <steps> <times>...]...
  -- The first six arguments are the clock step's (`clock`); span is L + Wmax(scene),
  -- the idempotency horizon's length. The clock key again as the record key: no lookup.
  -- A remembered decision at the record key whose time is > G - span (G of the clock
  -- before the event; the rule of idempotency.py, `live`) is the answer and nothing
  -- changes, not even the clock: {0, record}. Otherwise the clock step, then every
  -- entity (the arguments of its own function, t, G and the late flag from the step)
  -- and every pattern (the scene clock after the event), in order:
  -- {1, lsn, G before (false: none), late, slowest other clock (false: none),
  --  {entity replies}, {pattern replies}}.
  local function event(plans)
    return function(keys, args)
      local t, span, digest = tonumber(args[2]), tonumber(args[7]), args[8]
      if keys[2] ~= keys[1] then
        local rec = redis.call('GET', keys[2])
        if rec then
          local at = find(rec, '|', 1, true)
          local rt = at and tonumber(sub(rec, 1, at - 1))
          local g = tonumber(redis.call('HGET', keys[1], 'G:' .. args[1]))
          if rt and (g == nil or rt > g - span) then return {0, rec} end
        end
      end
      local step = clock(keys, args)
      if step.err then return step end
      local G, late, others = step[2] or nil, step[3], step[4] or nil
      local lateflag = late == 1 and '1' or '0'
      local horizon = G and G - span or ''
      local forget = slowest(G, others) or ''
      local raised = late == 0 and (G == nil or t > G)
      local after = slowest(raised and t or G, others) or ''
      local ne, np = tonumber(args[9]), tonumber(args[10])
      local k, a = 3, 11
      local entities, patterns = {}, {}
      for e = 1, ne do
        local i = tonumber(args[a])
        local P = plans[i]
        local eargs = {'a', args[2], G or '', lateflag, horizon, digest, args[a + 1],
                       args[a + 2], args[a + 3], args[a + 4], forget}
        for s = 1, P.NSLOT do eargs[11 + s] = args[a + 4 + s] end
        entities[e] = entity_at(plans, i)({keys[k], keys[k + 1], keys[k + 2]}, eargs)
        k, a = k + 3, a + 5 + P.NSLOT
      end
      for p = 1, np do
        local steps = tonumber(args[a + 6])
        local pargs = {args[a], args[2], lateflag, after, args[a + 1], args[a + 2],
                       args[a + 3], args[a + 4], args[a + 5], digest}
        for x = 1, steps do pargs[10 + x] = args[a + 6 + x] end
        patterns[p] = pattern({keys[k]}, pargs)
        k, a = k + 1, a + 7 + steps
      end
      return {1, step[1], step[2], late, step[4], entities, patterns}
    end
  end

  LIB = {entity = entity, entity_at = entity_at, event = event, clock = clock,
         unclock = unclock, recall = recall, inspect = inspect, pattern = pattern}
  return LIB
end

-- a registered callback: builds its function (make(library())) at its first call
local function lazy(make)
  local call
  return function(keys, args)
    if not call then call = make(library()) end
    return call(keys, args)
  end
end
