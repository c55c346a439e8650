-- One entity (scene, key fields B, key value) of riskengine's Redis feature state.
--
-- The plan table P (see riskengine/state/redis/plan.py) is prepended to this file, so
-- every EntityPlan has its own script. One call does, atomically: the idempotency guard,
-- forgetting (scene clock G), the lateness test, trimming, the values of every feature
-- keyed by B, storing the event, and remembering the answer. docs/semantics.md is the
-- contract; riskengine/state/redis/__init__.py documents the blob layout.
--
-- KEYS[1]  the bucket hash of the entity (small entities are fields of it)
-- KEYS[2]  the entity's own key (where it lives once it outgrows a bucket field)
-- ARGV[1]  mode: 'a' apply | 'l' rescore as late | 'u' take the event back, rescore as late
-- ARGV[2]  t, the event time (ms)
-- ARGV[3]  G, the scene clock before this event ('' when no event was accepted yet)
-- ARGV[4]  idempotency horizon G - L - Wmax(scene) ('' for none)
-- ARGV[5]  digest of the event id
-- ARGV[6]  mask of the groups whose `where` filter the event passed
-- ARGV[7]  TTL in ms (0: none)
-- ARGV[8]  the entity's field in the bucket (its key value)
-- ARGV[9]  the largest value kept as a bucket field (bytes)
-- ARGV[10..] slot texts of the event ('' when null or absent)
--
-- Reply: {late here (0/1), stored (0/1), scored as late (0/1), value 1, ..., value NOUT}

local L, WMAX, STRIDE, MASKED = P.L, P.WMAX, P.STRIDE, P.MASKED
local NSLOT, NOUT, DEPTH, GROUPS = P.NSLOT, P.NOUT, P.DEPTH, P.G
local floor, fmt, concat = math.floor, string.format, table.concat
local sub, find, byte = string.sub, string.find, string.byte
local tinsert, tremove, band = table.insert, table.remove, bit.band
local BASE = 10000
local SPILL = 2 ^ 52
local HALF = 2 ^ 26
local LAST = 2 ^ 53

local bucket, own = KEYS[1], KEYS[2]
local mode = ARGV[1]
local t = tonumber(ARGV[2])
local G = tonumber(ARGV[3])
local horizon = tonumber(ARGV[4])
local digest = ARGV[5]
local pmask = tonumber(ARGV[6])
local ttl = tonumber(ARGV[7])
local field = ARGV[8]
local small = tonumber(ARGV[9])
local SLOT0 = 9

-- value = msgpack(header) .. msgpack(blob); header = newest time the entity holds (entry
-- or guard record), what the sweep of idle siblings reads; blob = {header - base,
-- entries, tiles, ring}; entries is flat: per entry dt (t - base), [mask], slot texts
-- (false for null); tiles has one list per tiled group; ring is flat: per record digest,
-- dt, flags (1 late here, 2 stored, 4 scored as late), values
local packed = redis.call('HGET', bucket, field)
local in_bucket = packed ~= false
if not in_bucket then packed = redis.call('GET', own) end
local base, E, TILES, RING
if packed then
  local header, blob = cmsgpack.unpack(packed)
  base, E, TILES, RING = header - blob[1], blob[2], blob[3], blob[4]
else
  base, E, TILES, RING = t, {}, {}, {}
  for g = 1, P.NTILED do TILES[g] = {} end
end
local RSTRIDE = 3 + NOUT

-- ------------------------------------------------------------------ arithmetic

local function fdiv(a, b)
  local q = floor(a / b)
  local r = a - q * b
  if r < 0 then q = q - 1 elseif r >= b then q = q + 1 end
  return q
end

-- Exact integers beyond 2^53 as arrays of base-10^4 limbs: sum of l[i] * 10^(4(i-1)).
local function addlimbs(dst, src)
  for i = 1, #src do dst[i] = (dst[i] or 0) + src[i] end
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
  local a = limbs_of_number(fast)
  addlimbs(a, limbs)
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

-- q(v) = round(v * 1e6), half to even, as Python does it (|v * 1e6| < 2^52 here).
local function quantize(text)
  local x = tonumber(text) * 1e6
  local f = floor(x)
  local d = x - f
  if d > 0.5 or (d == 0.5 and f % 2 ~= 0) then f = f + 1 end
  return f
end

-- A slot text is R [\1 q] [\2 distinct key]; strings (R starts with ') have no extras.
local function parts(txt)
  if byte(txt, 1) == 39 then return txt, nil, nil end
  local i1 = find(txt, '\1', 1, true)
  local i2 = find(txt, '\2', 1, true)
  if not i1 and not i2 then return txt, nil, nil end
  local r = sub(txt, 1, (i1 or i2) - 1)
  local q, d
  if i1 then q = sub(txt, i1 + 1, (i2 or 0) - 1) end
  if i2 then d = sub(txt, i2 + 1) end
  return r, q, d
end

-- Exact sums of micro-units: state st = {k, s, sl, a, al, b, bl, c, cl, dl} where the
-- numbers are doubles kept below 2^52 (so every addition is exact) and the tables are
-- limbs they spill into. sum = s + sl; sum of squares = (a + al) * 2^52
-- + 2 (b + bl) * 2^26 + (c + cl) + dl, with q = qa * 2^26 + qb, a = qa^2, b = qa qb,
-- c = qb^2; dl holds the squares of the rare |q| >= 2^52 (given as text).
local function qstate()
  return {0, 0, {}, 0, {}, 0, {}, 0, {}, {}}
end

local function fadd(st, at, x)
  local v = st[at] + x
  if v >= SPILL or v <= -SPILL then
    local l = st[at + 1]
    addlimbs(l, limbs_of_number(v))
    carry(l)
    v = 0
  end
  st[at] = v
end

local function qadd(st, txt, squares)
  local r, qt = parts(txt)
  st[1] = st[1] + 1
  if qt then
    local l = limbs_of_text(qt)
    addlimbs(st[3], l); carry(st[3])
    if squares then addlimbs(st[10], squares_of(l)); carry(st[10]) end
    return
  end
  local q = quantize(r)
  fadd(st, 2, q)
  if squares then
    local qb = q % HALF
    local qa = (q - qb) / HALF
    fadd(st, 4, qa * qa)
    fadd(st, 6, qa * qb)
    fadd(st, 8, qb * qb)
  end
end

local function qmerge(dst, src)
  dst[1] = dst[1] + src[1]
  for at = 2, 8, 2 do
    fadd(dst, at, src[at])
    addlimbs(dst[at + 1], src[at + 1])
  end
  addlimbs(dst[10], src[10])
end

local function qnormal(st)
  for at = 3, 9, 2 do carry(st[at]) end
  carry(st[10])
end

-- ------------------------------------------------------------------ entries

-- the event's slot texts (false when null)
local ETXT = {}
for s = 1, NSLOT do
  local txt = ARGV[SLOT0 + s]
  if txt ~= nil and txt ~= '' then ETXT[s] = txt else ETXT[s] = false end
end
local OFF = STRIDE - NSLOT

local function text_of(i, s)
  if i == 0 then return ETXT[s] end
  return E[(i - 1) * STRIDE + OFF + s]
end

local function entry_t(i) return base + E[(i - 1) * STRIDE + 1] end

local function entry_mask(i)
  if MASKED then return E[(i - 1) * STRIDE + 2] end
  return 1
end

local function count_entries() return #E / STRIDE end

-- last index whose time is <= x (entries are sorted by time, then arrival)
local function last_at_or_before(x)
  local n = count_entries()
  if n == 0 or entry_t(n) <= x then return n end
  local lo, hi = 0, n
  while hi - lo > 1 do
    local mid = floor((lo + hi) / 2)
    if entry_t(mid) <= x then lo = mid else hi = mid end
  end
  return lo
end

-- ------------------------------------------------------------------ accumulators

-- acc: n events; per item j: q[j] a q state; set[j], nd[j] distinct keys; holders of
-- min/max/first/last as parallel arrays hv (number), ht (time), ho (order), hr (text).
-- Ties go to the earlier (time, order): order is the entry index, 0 for a tile, 2^53
-- for the event itself (the latest of its time).
local function newacc(items)
  local a = {n = 0, q = {}, set = {}, nd = {}, hv = {}, ht = {}, ho = {}, hr = {}}
  for j = 1, #items do
    local kind = items[j][1]
    if kind == 'q' then
      a.q[j] = qstate()
    elseif kind == 'd' then
      a.set[j] = {}; a.nd[j] = 0
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
end

local function acc_add(a, items, i, tx, o)
  a.n = a.n + 1
  for j = 1, #items do
    local it = items[j]
    local txt = text_of(i, it[2])
    if txt then
      local kind = it[1]
      if kind == 'q' then
        qadd(a.q[j], txt, it[3])
      elseif kind == 'd' then
        local r, _, d = parts(txt)
        local dk = d or r
        local set = a.set[j]
        if not set[dk] then set[dk] = true; a.nd[j] = a.nd[j] + 1 end
      else
        local r = parts(txt)
        local v = 0
        if kind == 'mn' or kind == 'mx' then v = tonumber(r) end
        offer(a, j, kind, r, v, tx, o)
      end
    end
  end
end

-- a tile: {index, count, item states...}: q a q state, d {key = 1}, mn/mx/fi/la false
-- or {t, text}
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

-- ------------------------------------------------------------------ values

-- history group: stored x with lo - W < t(x) <= t, plus the event;
-- lo = t, or max(t, maxts - L) for an event scored as late
local function history_values(g, out, lo_base, hi)
  local items, wins = g.items, g.wins
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
    if not MASKED or band(E[(i - 1) * STRIDE + 2], bitg) ~= 0 then
      acc_add(a, items, i, tx, i)
    end
  end
  for w = j, nw do emit(a, wins[w], out) end
end

-- tiled group: whole tiles from floor((lo - W)/H), then the event's own tile: its raw
-- entries up to t, or (scored as late) the whole tile
local function tiled_values(g, tiles, out, late, lo_base, hi)
  local items, wins, hop = g.items, g.wins, g.hop
  local a = newacc(items)
  if band(pmask, g.bit) ~= 0 then acc_add(a, items, 0, t, LAST) end
  local own = fdiv(t, hop)
  local top = own
  if not late then
    top = own - 1
    local start = own * hop
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

local function all_values(maxts, late)
  local out = {}
  local lo_base = t
  if late and maxts and maxts - L > t then lo_base = maxts - L end
  local hi = last_at_or_before(t)
  for g = 1, #GROUPS do
    local grp = GROUPS[g]
    if grp.tiled then
      tiled_values(grp, TILES[grp.ti], out, late, lo_base, hi)
    else
      history_values(grp, out, lo_base, hi)
    end
  end
  return out
end

-- ------------------------------------------------------------------ storing

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
    local txt = text_of(i, it[2])
    if txt then
      local kind = it[1]
      local st = tile[2 + j]
      if kind == 'q' then
        qadd(st, txt, it[3])
        qnormal(st)
      else
        local r, _, d = parts(txt)
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

local function store(hi)
  if #E == 0 then
    shift_ring(t)
    base = t
  end
  local row = {t - base}
  if MASKED then row[2] = pmask end
  for s = 1, NSLOT do row[#row + 1] = ETXT[s] end
  local at = hi * STRIDE
  if at == #E then
    for f = 1, STRIDE do E[at + f] = row[f] end
  else
    for f = 1, STRIDE do tinsert(E, at + f, row[f]) end
  end
  for g = 1, #GROUPS do
    local grp = GROUPS[g]
    if grp.tiled and band(pmask, grp.bit) ~= 0 then tile_add(grp, TILES[grp.ti], 0, t) end
  end
end

-- take back the event's entry (the last one at time t) and rebuild its tiles from the
-- raw entries of those tiles
local function unstore()
  local hi = last_at_or_before(t)
  if hi == 0 or entry_t(hi) ~= t then return end
  local mask = entry_mask(hi)
  local at = (hi - 1) * STRIDE
  for _ = 1, STRIDE do tremove(E, at + 1) end
  for g = 1, #GROUPS do
    local grp = GROUPS[g]
    if grp.tiled and band(mask, grp.bit) ~= 0 then
      local tiles, hop = TILES[grp.ti], grp.hop
      local idx = fdiv(t, hop)
      for p = #tiles, 1, -1 do
        if tiles[p][1] == idx then tremove(tiles, p) end
      end
      local n = count_entries()
      for i = 1, n do
        local tx = entry_t(i)
        if fdiv(tx, hop) == idx and band(entry_mask(i), grp.bit) ~= 0 then
          tile_add(grp, tiles, i, tx)
        end
      end
    end
  end
end

-- drop what no event can read any more (maxts - L - W of each group), rebase times
local function trim(maxts)
  local n = count_entries()
  local thr, top = {}, -LAST
  for g = 1, #GROUPS do
    local grp = GROUPS[g]
    local x
    if grp.tiled then
      x = fdiv(maxts - L, grp.hop) * grp.hop
      local tiles = TILES[grp.ti]
      local keep = fdiv(maxts - L - grp.wmax, grp.hop)
      while #tiles > 0 and tiles[1][1] < keep do tremove(tiles, 1) end
    else
      x = maxts - L - grp.wmax + 1
    end
    thr[g] = x
    if x > top then top = x end
  end
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
  E, base = R, newbase
end

-- ------------------------------------------------------------------ the call

-- a guard record, unpacked: {digest, t, late here, stored, scored as late, values}
local function find_record()
  for r = #RING / RSTRIDE, 1, -1 do
    local at = (r - 1) * RSTRIDE
    if RING[at + 1] == digest then
      local flags = RING[at + 3]
      local values = {}
      for x = 1, NOUT do values[x] = RING[at + 3 + x] end
      return {digest, base + RING[at + 2], band(flags, 1), band(flags, 2) / 2,
              band(flags, 4) / 4, values}, r
    end
  end
  return nil, nil
end

local function remember(rec)
  local _, r = find_record()
  if r then
    local at = (r - 1) * RSTRIDE
    for _ = 1, RSTRIDE do tremove(RING, at + 1) end
  end
  if DEPTH == 0 then return end
  local n = #RING
  RING[n + 1] = rec[1]
  RING[n + 2] = rec[2] - base
  RING[n + 3] = rec[3] + 2 * rec[4] + 4 * rec[5]
  for x = 1, NOUT do RING[n + 3 + x] = rec[6][x] end
  while #RING > DEPTH * RSTRIDE do
    for _ = 1, RSTRIDE do tremove(RING, 1) end
  end
end

local function reply(rec)
  local res = {rec[3], rec[4], rec[5]}
  local values = rec[6]
  for x = 1, NOUT do res[3 + x] = values[x] end
  return res
end

local function maxts_now()
  local n = count_entries()
  if n == 0 then return nil end
  return entry_t(n)
end

-- on every write, a few sampled siblings in the bucket holding nothing newer than
-- G - L - Wmax(scene) are removed
local function sweep()
  if not G then return end
  local idle = G - L - P.WSCENE
  local pairs_ = redis.call('HRANDFIELD', bucket, P.SWEEP, 'WITHVALUES')
  for x = 1, #pairs_, 2 do
    if pairs_[x] ~= field then
      local _, header = cmsgpack.unpack_one(pairs_[x + 1])
      if header <= idle then redis.call('HDEL', bucket, pairs_[x]) end
    end
  end
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
    if in_bucket then redis.call('HDEL', bucket, field) else redis.call('DEL', own) end
    return
  end
  header = header or base
  local data = cmsgpack.pack(header, {header - base, E, TILES, RING})
  if #data <= small then
    redis.call('HSET', bucket, field, data)
    if ttl > 0 then redis.call('PEXPIRE', bucket, ttl) end
    if packed and not in_bucket then redis.call('DEL', own) end
  else
    if ttl > 0 then redis.call('SET', own, data, 'PX', ttl) else redis.call('SET', own, data) end
    if in_bucket then redis.call('HDEL', bucket, field) end
  end
  sweep()
end

local rec = find_record()
if rec and (mode ~= 'a' or horizon == nil or rec[2] > horizon) then
  if mode == 'a' or rec[5] == 1 then return reply(rec) end
  -- rescore an event this entity scored as on time: take it back if stored
  if rec[4] == 1 then unstore() end
  local values = all_values(maxts_now(), true)
  local fixed = {digest, rec[2], rec[3], 0, 1, values}
  remember(fixed)
  save()
  return reply(fixed)
end

if mode ~= 'a' then
  if mode == 'u' then unstore() end
  local values = all_values(maxts_now(), true)
  local fixed = {digest, t, 0, 0, 1, values}
  remember(fixed)
  save()
  return reply(fixed)
end

local maxts = maxts_now()
if maxts and G and maxts <= G - L - WMAX then
  -- forgotten: the key has been idle for L + Wmax(B) of the scene clock
  E = {}
  for g = 1, #TILES do TILES[g] = {} end
  maxts = nil
end
local late = maxts ~= nil and t < maxts - L
if maxts then trim(maxts) end
local values = all_values(maxts, late)
local stored = 0
if not late and pmask ~= 0 then
  store(last_at_or_before(t))
  stored = 1
end
local lh = 0
if late then lh = 1 end
local record = {digest, t, lh, stored, lh, values}
remember(record)
if stored == 1 or DEPTH > 0 or packed then save() end
return reply(record)
