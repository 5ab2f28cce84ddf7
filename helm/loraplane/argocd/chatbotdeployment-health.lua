-- Argo CD health check for loraplane.io/ChatbotDeployment
-- (resource.customizations.health.loraplane.io_ChatbotDeployment).
hs = {}
local status = obj.status
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
local paused = obj.spec ~= nil and obj.spec.rollout ~= nil and obj.spec.rollout.paused == true
if obj.metadata.annotations ~= nil and obj.metadata.annotations["loraplane.io/paused"] == "true" then
  paused = true
end
local phase = status.phase
if phase == "Healthy" then
  hs.status = "Healthy"
  hs.message = "Serving " .. (status.stable or "base")
elseif phase == "Canary" then
  local weight = status.canaryWeight or 0
  if paused then
    hs.status = "Suspended"
    hs.message = "Canary " .. (status.canary or "?") .. " paused at " .. weight .. "%"
  else
    hs.status = "Progressing"
    hs.message = "Canary " .. (status.canary or "?") .. " at " .. weight .. "%"
  end
elseif phase == "RolledBack" or phase == "Degraded" then
  hs.status = "Degraded"
  hs.message = status.message or phase
else
  hs.status = "Progressing"
  hs.message = status.message or phase
end
return hs
