-- Argo CD health of an autoscene Invocation (one run), read from its Succeeded condition.
-- Healthy once it succeeded, Degraded once it failed (with why), Progressing while it is pending,
-- queued or running (Unknown) or before the operator has written the condition.
local health = {status = "Progressing", message = "waiting for the operator to start the run"}
if obj.status == nil or obj.status.conditions == nil then
  return health
end
for _, condition in ipairs(obj.status.conditions) do
  if condition.type == "Succeeded" then
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
