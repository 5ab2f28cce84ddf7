-- Argo CD health check for loraplane.io/FineTuneJob (resource.customizations.health.loraplane.io_FineTuneJob).
hs = {}
local function condition(status, ctype)
  if status.conditions == nil then return nil end
  for _, c in ipairs(status.conditions) do
    if c.type == ctype then return c end
  end
  return nil
end

local function adapter_version(adapter)
  if adapter.version ~= nil then return adapter.version end
  return "(unversioned)"
end

local status = obj.status
-- Failed comes first, as in Argo CD's own Job check: a suspended job that failed is Degraded.
if status ~= nil and status.phase == "Failed" then
  hs.status = "Degraded"
  hs.message = status.message or "Training failed"
  return hs
end
if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "Suspended: no new training runs start"
  return hs
end
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator"
  return hs
end
if obj.metadata.generation ~= nil and status.observedGeneration ~= nil
    and status.observedGeneration < obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. obj.metadata.generation
  return hs
end
local stalled = condition(status, "Stalled")
if status.phase == "Failed" or (stalled ~= nil and stalled.status == "True") then
  hs.status = "Degraded"
  hs.message = status.message or (stalled and stalled.message) or "Training failed"
  return hs
end
if status.phase == "Succeeded" then
  if status.adapter ~= nil and status.adapter.verdict == "rejected" then
    hs.status = "Degraded"
    hs.message = "Adapter " .. adapter_version(status.adapter) .. " rejected: " .. (status.adapter.reason or "quality gate")
    return hs
  end
  if status.adapter ~= nil and status.adapter.verdict == "pending" then
    -- spec.evaluation.human: trained and through the automatic gates, waiting for people to sign it off.
    hs.status = "Progressing"
    local human = status.adapter.humanEvaluation or {}
    hs.message = "Adapter " .. adapter_version(status.adapter) .. " awaits human evaluation: " ..
      (human.message or "no evaluation attached")
    return hs
  end
  hs.status = "Healthy"
  if status.adapter ~= nil then
    hs.message = "Adapter " .. adapter_version(status.adapter) .. " published"
  else
    hs.message = status.message or "Succeeded"
  end
  return hs
end
hs.status = "Progressing"
local msg = status.phase
if status.progress ~= nil and status.progress.percent ~= nil then
  msg = msg .. " " .. status.progress.percent .. "%"
end
if status.message ~= nil then msg = msg .. ": " .. status.message end
hs.message = msg
return hs
