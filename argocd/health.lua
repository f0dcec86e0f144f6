-- Argo CD health for every amlops.io kind: the same script under each kind's key.
--
-- Reads only the amlops status contract (design.md section 3): top-level status.observedGeneration and the
-- kstatus conditions Ready / Reconciling / Stalled, plus the conditions Running / Complete / Failed /
-- Suspended and spec.suspend that only job kinds have. No kind is named, so a new kind needs no change here.
-- Argo CD handles deletionTimestamp itself before calling this script.
--
-- Argo CD runs scripts from argocd-cm without the string and math libraries (only base, table and a safe
-- os), so this script uses plain comparisons and concatenation only.

local hs = {}

local function find(conditions, conditionType)
  for _, condition in ipairs(conditions) do
    if condition.type == conditionType then
      return condition
    end
  end
  return nil
end

local function isTrue(condition)
  return condition ~= nil and condition.status == "True"
end

-- "Reason: message", so the Argo CD UI shows Azure's error code next to the text.
local function describe(condition, fallback)
  if condition == nil then
    return fallback
  end
  local reason = condition.reason or ""
  local message = condition.message or ""
  if reason ~= "" and message ~= "" then
    return reason .. ": " .. message
  end
  if message ~= "" then
    return message
  end
  if reason ~= "" then
    return reason
  end
  return fallback
end

local status = obj.status
-- amlops writes observedGeneration on every status write: without it the operator has not seen the object.
if status == nil or status.observedGeneration == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for amlops"
  return hs
end

-- A status about an older spec says nothing about the current one (kstatus rule; Config Connector does the same).
if obj.metadata.generation ~= nil and status.observedGeneration ~= obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for amlops to observe generation " .. obj.metadata.generation
    .. " (observed " .. status.observedGeneration .. ")"
  return hs
end

local conditions = status.conditions or {}

local stalled = find(conditions, "Stalled")
if isTrue(stalled) then
  hs.status = "Degraded"
  hs.message = describe(stalled, "Stalled")
  return hs
end

-- Job kinds: terminal conditions are sticky (design.md section 3), so they win over everything but Stalled.
-- Other kinds never have these conditions nor spec.suspend.
local failed = find(conditions, "Failed")
if isTrue(failed) then
  hs.status = "Degraded"
  hs.message = describe(failed, "Failed")
  return hs
end
local complete = find(conditions, "Complete")
if isTrue(complete) then
  hs.status = "Healthy"
  hs.message = describe(complete, "Complete")
  return hs
end
local suspended = find(conditions, "Suspended")
if isTrue(suspended) or (obj.spec ~= nil and obj.spec.suspend == true) then
  hs.status = "Suspended"
  hs.message = describe(suspended, "Suspended by spec.suspend")
  return hs
end
local running = find(conditions, "Running")
if isTrue(running) then
  hs.status = "Progressing"
  hs.message = describe(running, "Running")
  if status.progress ~= nil then
    local unit = ""
    if status.miniBatches ~= nil then
      unit = " mini-batches"
    end
    hs.message = hs.message .. " (" .. status.progress .. unit .. ")"
  end
  return hs
end

local reconciling = find(conditions, "Reconciling")
if isTrue(reconciling) then
  hs.status = "Progressing"
  hs.message = describe(reconciling, "Reconciling")
  return hs
end

local ready = find(conditions, "Ready")
if isTrue(ready) then
  hs.status = "Healthy"
  hs.message = describe(ready, "Ready")
  return hs
end

-- Ready False or Unknown without Reconciling or Stalled: still converging, as kstatus reads it.
hs.status = "Progressing"
hs.message = describe(ready, "Waiting for amlops")
return hs
