# The containers' environment, checked at plan time against what the programs accept. The rules are
# the server's and the worker's own configuration schemas, written out by `make config-reference`
# (container-environment.json), so that a value a program would refuse at start — learning_rate =
# 500, or LEASE_MS = "50" in server_extra_environment — fails the plan in the program's words,
# instead of deploying a task that stops at once and a service that keeps replacing it. Rules that
# relate two variables (LR_MIN at most LEARNING_RATE, ...) stay the programs' own.

locals {
  accepted = jsondecode(file("${path.module}/container-environment.json"))

  # The shards' environments differ only in what Terraform computes itself (SHARD_INDEX, ...).
  container_environments = {
    server = local.shard_environment[0]
    worker = local.worker_environment
  }

  # Each value that has a rule, read as the programs read it: trimmed (and a word in lower case).
  checked_environment = flatten([for program, environment in local.container_environments : [
    for name, value in environment : { program = program, name = name, value = trimspace(value), rule = local.accepted[program][name] }
    if contains(keys(local.accepted[program]), name) && value != null
  ]])

  environment_problems = [for v in local.checked_environment : "${v.program} ${v.name} = \"${v.value}\": expected ${v.rule.accepts}"
    if !(v.rule.kind == "word" ? contains(v.rule.values, lower(v.value)) : try(
      (v.rule.kind == "number" || can(regex("^[+-]?[0-9]+$", v.value))) && tonumber(v.value) >= v.rule.min && tonumber(v.value) <= v.rule.max,
  false))]
}

resource "terraform_data" "container_environment" {
  lifecycle {
    precondition {
      condition     = length(local.environment_problems) == 0
      error_message = "The containers would refuse these values (most come from the variable of the same name in lower case, the others from server_extra_environment or worker_extra_environment):\n${join("\n", local.environment_problems)}"
    }
  }
}
