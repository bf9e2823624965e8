-- Argo CD health check for greenmodel.dev/GreenModel.
-- Install (argocd-cm):  resource.customizations.health.greenmodel.dev_GreenModel: |
--                          <this file>
-- Argo CD runs it with the live object in `obj` and reads {status, message}.
-- Semantics follow kstatus (sigs.k8s.io/cli-utils pkg/kstatus), which Flux uses too:
--   deletionTimestamp                         -> Progressing (kstatus: Terminating)
--   status.observedGeneration ~= generation   -> Progressing (kstatus: InProgress)
--   condition Reconciling=True                -> Progressing (kstatus: InProgress)
--   condition Stalled=True                    -> Degraded    (kstatus: Failed)
--   condition Ready=True                      -> Healthy     (kstatus: Current)
-- Argo CD is stricter than kstatus where the operator has not spoken yet: no status, no
-- observedGeneration, or no Ready=True condition stay Progressing rather than Healthy.
-- Written for Lua 5.1 semantics (Argo CD embeds gopher-lua) and tested with lua5.4.

local hs = { status = "Progressing", message = "Waiting for the greenmodel operator" }

local function find_condition(conditions, ctype)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == ctype then
      return c
    end
  end
  return nil
end

local function describe(c, fallback)
  if c.message ~= nil and c.message ~= "" then
    if c.reason ~= nil and c.reason ~= "" then
      return c.reason .. ": " .. c.message
    end
    return c.message
  end
  if c.reason ~= nil and c.reason ~= "" then
    return c.reason
  end
  return fallback
end

if obj.metadata ~= nil and obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "GreenModel is being deleted"
  return hs
end

if obj.status == nil then
  hs.message = "Waiting for the operator to publish status"
  return hs
end

local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end
local observed = obj.status.observedGeneration
if observed == nil then
  hs.message = "Waiting for the operator to observe the spec"
  return hs
end
if generation ~= nil and observed ~= generation then
  hs.message = "GreenModel generation is " .. tostring(generation) ..
    ", but latest observed generation is " .. tostring(observed)
  return hs
end

local conditions = obj.status.conditions
local reconciling = find_condition(conditions, "Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(reconciling, "Reconciling")
  return hs
end

local stalled = find_condition(conditions, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled, "Stalled")
  return hs
end

local ready = find_condition(conditions, "Ready")
if ready == nil then
  hs.message = "Waiting for the Ready condition"
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready, "Ready")
  return hs
end
hs.status = "Progressing"
hs.message = describe(ready, "Not ready")
return hs
