-- Run an Argo CD Lua customization (health.lua, discovery.lua or an action.lua) on one object, the way
-- Argo CD does, and print the script's return value as JSON on stdout.
--
--   lua5.1 argocd/test_harness.lua SCRIPT OBJECT
--
-- OBJECT is a Lua file that returns the object as a table (tests/gitops generates it from YAML fixtures).
-- Like Argo CD (util/lua/lua.go) the object is the global `obj` and the script runs as a chunk whose value
-- is what it returns. Argo CD runs argocd-cm scripts with only the base, table and a safe os library, so
-- the script runs in an environment without string, math, io or debug, and strings lose their methods:
-- a script that would fail in Argo CD fails here too.

local scriptPath, objectPath = arg[1], arg[2]
if scriptPath == nil or objectPath == nil then
  io.stderr:write("usage: lua5.1 test_harness.lua SCRIPT OBJECT\n")
  os.exit(2)
end

-- The harness keeps its own references: the sandbox below removes these libraries from the script's view.
local format, byte, gsub, sort, concat = string.format, string.byte, string.gsub, table.sort, table.concat
local floor, huge, write = math.floor, math.huge, io.write

local object = assert(loadfile(objectPath))()
local script = assert(loadfile(scriptPath))

local sandbox = {
  assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs, pcall = pcall,
  print = print, select = select, tonumber = tonumber, tostring = tostring, type = type,
  unpack = unpack, xpcall = xpcall, setmetatable = setmetatable, getmetatable = getmetatable,
  rawget = rawget, rawset = rawset, rawequal = rawequal,
  table = table,
  os = { time = os.time, date = os.date, clock = os.clock },
  obj = object,
}
sandbox._G = sandbox
setfenv(script, sandbox)

-- Strings share one metatable whose __index is the string library: hide it while the script runs.
local stringMeta = getmetatable("")
local stringIndex = stringMeta.__index
stringMeta.__index = {}
local ok, result = pcall(script)
stringMeta.__index = stringIndex
if not ok then
  io.stderr:write("script error: " .. tostring(result) .. "\n")
  os.exit(1)
end

-- JSON encoding as Argo CD's gopher-json does it: a table with keys 1..n is an array, an empty table is [].
local encode

local function isArray(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  for i = 1, n do
    if t[i] == nil then return false, 0 end
  end
  return true, n
end

local function encodeString(s)
  return '"' .. gsub(s, '[%c"\\]', function(c)
    local named = { ['"'] = '\\"', ['\\'] = '\\\\', ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t' }
    return named[c] or format("\\u%04x", byte(c))
  end) .. '"'
end

encode = function(v)
  local t = type(v)
  if t == "nil" then return "null" end
  if t == "boolean" then return tostring(v) end
  if t == "number" then
    if v ~= v or v == huge or v == -huge then error("cannot encode " .. tostring(v)) end
    if v == floor(v) then return format("%d", v) end
    return format("%.17g", v)
  end
  if t == "string" then return encodeString(v) end
  if t ~= "table" then error("cannot encode a " .. t) end
  local array, n = isArray(v)
  local parts = {}
  if array then
    for i = 1, n do parts[i] = encode(v[i]) end
    return "[" .. concat(parts, ",") .. "]"
  end
  local keys = {}
  for k in pairs(v) do
    if type(k) ~= "string" then error("cannot encode a table with a " .. type(k) .. " key") end
    keys[#keys + 1] = k
  end
  sort(keys)
  for i, k in ipairs(keys) do parts[i] = encodeString(k) .. ":" .. encode(v[k]) end
  return "{" .. concat(parts, ",") .. "}"
end

write(encode(result), "\n")
