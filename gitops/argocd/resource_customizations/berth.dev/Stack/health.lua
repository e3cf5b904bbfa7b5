-- Argo CD health of a berth.dev Stack, by the kstatus rules the controller follows (so Argo CD and Flux agree):
-- a status written for an older generation says nothing yet; then Reconciling=True is Progressing, Stalled=True
-- is Degraded, and Ready=True is Healthy. Lua 5.1, as Argo CD's gopher-lua runs it.
local hs = {}

local function condition(conditions, kind)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function describe(c, otherwise)
  local reason = c.reason or ""
  local message = c.message or ""
  if reason ~= "" and message ~= "" then
    return reason .. ": " .. message
  end
  if message ~= "" then
    return message
  end
  if reason ~= "" then
    return reason
  end
  return otherwise
end

local generation = obj.metadata.generation
local status = obj.status

if obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "The Stack is being deleted; the controller applies its deletionPolicy first"
  return hs
end

if status == nil or status.observedGeneration == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the berth controller to observe the Stack"
  return hs
end

if generation ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = string.format(
    "Waiting for the berth controller to observe generation %d (the status is of generation %d)",
    generation,
    status.observedGeneration
  )
  return hs
end

local reconciling = condition(status.conditions, "Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(reconciling, "The Stack is rolling out")
  return hs
end

local stalled = condition(status.conditions, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled, "The Stack is stalled")
  return hs
end

local ready = condition(status.conditions, "Ready")
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready, "The Stack is ready")
  return hs
end
hs.status = "Progressing"
hs.message = describe(ready, "The Stack is not ready yet")
return hs
