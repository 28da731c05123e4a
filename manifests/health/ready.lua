-- Argo CD health of an autoscene Record, Trigger or Action, read from its Ready condition.
-- Healthy when Ready is True, Degraded when it is False (with the operator's message), Progressing
-- while it is Unknown, not written yet, or written for an older generation of the spec.
local health = {status = "Progressing", message = "waiting for the operator's Ready condition"}
if obj.status == nil or obj.status.conditions == nil then
  return health
end
for _, condition in ipairs(obj.status.conditions) do
  if condition.type == "Ready" then
    local generation = obj.metadata.generation
    local observed = condition.observedGeneration
    if generation ~= nil and observed ~= nil and observed < generation then
      health.message = "the operator has not yet seen generation " .. generation
      return health
    end
    if condition.status == "True" then
      health.status = "Healthy"
    elseif condition.status == "False" then
      health.status = "Degraded"
    end
    health.message = condition.message or condition.reason or ""
    return health
  end
end
return health
