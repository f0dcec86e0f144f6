-- Argo CD resource actions for every amlops.io job kind (ParallelJob, CommandJob), as argo-cd's batch/Job's:
-- suspend a job that is running, resume a suspended one, nothing once it has finished (Complete or Failed
-- are terminal). There is no "terminate": deleting the job cancels it in Azure.
local actions = {}

local finished = false
if obj.status ~= nil and obj.status.conditions ~= nil then
  for _, condition in ipairs(obj.status.conditions) do
    if (condition.type == "Complete" or condition.type == "Failed") and condition.status == "True" then
      finished = true
    end
  end
end

if not finished then
  if obj.spec.suspend == true then
    actions["resume"] = {["iconClass"] = "fa fa-fw fa-play"}
  else
    actions["suspend"] = {["iconClass"] = "fa fa-fw fa-pause"}
  end
end

return actions
