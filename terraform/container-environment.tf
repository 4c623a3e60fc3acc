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

  # The values that have a rule, read as the programs read them: trimmed (and words in lower case).
  checked_environment = { for program, environment in local.container_environments : program => {
    for name, value in environment : name => trimspace(value) if contains(keys(local.accepted[program]), name) && value != null
  } }

  environment_problems = flatten([for program, values in local.checked_environment : [
    for name, value in values : "${program} ${name} = \"${value}\": expected ${local.accepted[program][name].accepts}"
    if !(local.accepted[program][name].kind == "word" ? contains(local.accepted[program][name].values, lower(value)) : try(
      (local.accepted[program][name].kind == "number" || can(regex("^[+-]?[0-9]+$", value)))
      && tonumber(value) >= local.accepted[program][name].min && tonumber(value) <= local.accepted[program][name].max,
    false))
  ]])
}

resource "terraform_data" "container_environment" {
  lifecycle {
    precondition {
      condition     = length(local.environment_problems) == 0
      error_message = "The containers would refuse these values (most come from the variable of the same name in lower case, the others from server_extra_environment or worker_extra_environment):\n${join("\n", local.environment_problems)}"
    }
  }
}
