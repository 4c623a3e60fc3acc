# Offline tests of sharded servers (shard_count): K server services, each with its own task
# definition (SHARD_INDEX, SHARD_ADDRESSES) and Cloud Map name, shard 0 keeping the documented
# parameter-server name. The AWS provider is mocked, as in main.tftest.hcl.

mock_provider "aws" {
  source = "./tests/aws"
}

variables {
  image_tag = "0123abcd4567"
}

run "one_shard_by_default" {
  command = apply

  assert {
    condition     = length(module.parameter_server.services) == 1 && length(module.parameter_server.task_definitions) == 1 && length(aws_service_discovery_service.parameter_server) == 1
    error_message = "shard_count = 1 must create one server service"
  }
  assert {
    condition = length([
      for e in jsondecode(module.parameter_server.task_definitions[0].container_definitions)[0].environment : e.name
      if contains(["SHARD_INDEX", "SHARD_ADDRESSES"], e.name)
    ]) == 0
    error_message = "a single server gets no shard settings"
  }
  assert {
    condition     = output.parameter_server_shards == [{ service = "distributed-ps-dev-parameter-server", address = "parameter-server.distributed-ps-dev.local:8000" }]
    error_message = "one shard: the documented server, got ${jsonencode(output.parameter_server_shards)}"
  }
}

run "three_shards_are_three_services_with_their_own_names" {
  command = apply

  variables {
    shard_count      = 3
    create_iam_roles = true
  }

  # Services, task definitions and Cloud Map names.
  assert {
    condition     = length(module.parameter_server.services) == 3 && length(module.parameter_server.task_definitions) == 3 && length(aws_service_discovery_service.parameter_server) == 3
    error_message = "shard_count = 3 must make three server services"
  }
  assert {
    condition     = module.parameter_server.services[*].name == ["distributed-ps-dev-parameter-server", "distributed-ps-dev-parameter-server-1", "distributed-ps-dev-parameter-server-2"]
    error_message = "server services must be named <name>-parameter-server, -1, -2"
  }
  assert {
    condition     = module.parameter_server.task_definitions[*].family == ["distributed-ps-dev-parameter-server", "distributed-ps-dev-parameter-server-1", "distributed-ps-dev-parameter-server-2"]
    error_message = "each shard has its own task definition family"
  }
  assert {
    condition     = aws_service_discovery_service.parameter_server[*].name == ["parameter-server", "parameter-server-1", "parameter-server-2"]
    error_message = "Cloud Map names must be parameter-server (shard 0), parameter-server-1, parameter-server-2"
  }
  assert {
    condition     = output.parameter_server_address == "parameter-server.distributed-ps-dev.local:8000" && output.parameter_server_dns_name == "parameter-server.distributed-ps-dev.local"
    error_message = "shard 0 must stay reachable at the documented address"
  }
  assert {
    condition = [for s in module.parameter_server.services : [one(s.service_registries).registry_arn, s.task_definition]] == [
      for i in range(3) : [aws_service_discovery_service.parameter_server[i].arn, module.parameter_server.task_definitions[i].arn]
    ] && length(toset(aws_service_discovery_service.parameter_server[*].arn)) == 3
    error_message = "each shard service must run its own task definition and register its own Cloud Map name"
  }
  assert {
    condition = alltrue([for s in module.parameter_server.services :
    s.desired_count == 1 && one(s.network_configuration).security_groups == toset([aws_security_group.parameter_server.id]) && s.deployment_maximum_percent == 100])
    error_message = "every shard runs one task in the server security group, never two at once"
  }
  assert {
    condition     = output.running_tasks == 19
    error_message = "3 server shards + 16 workers = 19 tasks, got ${output.running_tasks}"
  }

  # Each shard's environment: its index, every address, its own service; only shard 0 scales the workers.
  assert {
    condition = [
      for td in module.parameter_server.task_definitions : {
        for e in jsondecode(td.container_definitions)[0].environment : e.name => e.value
        if contains(["SHARD_INDEX", "SHARD_ADDRESSES", "SERVER_SERVICE", "WORKER_SERVICE", "CHECKPOINT_URI", "TOTAL_WORKERS_EXPECTED"], e.name)
      }
      ] == [for k in range(3) : merge({
        TOTAL_WORKERS_EXPECTED = "16" # sharded servers keep a fixed worker count
        SHARD_INDEX            = tostring(k)
        SHARD_ADDRESSES        = "parameter-server.distributed-ps-dev.local:8000,parameter-server-1.distributed-ps-dev.local:8000,parameter-server-2.distributed-ps-dev.local:8000"
        SERVER_SERVICE         = k == 0 ? "distributed-ps-dev-parameter-server" : "distributed-ps-dev-parameter-server-${k}"
        CHECKPOINT_URI         = "s3://${aws_s3_bucket.data.id}/checkpoints"
    }, k == 0 ? { WORKER_SERVICE = "distributed-ps-dev-worker" } : {})]
    error_message = "shard environments are wrong"
  }
  assert {
    condition     = [for td in module.parameter_server.task_definitions : jsondecode(td.container_definitions)[0].logConfiguration.options["awslogs-stream-prefix"]] == ["parameter-server", "parameter-server-1", "parameter-server-2"]
    error_message = "each shard logs to the server log group under its own stream prefix"
  }
  assert {
    condition     = { for e in jsondecode(module.worker.task_definitions[0].container_definitions)[0].environment : e.name => e.value }["PARAMETER_SERVER_ADDRESS"] == "parameter-server.distributed-ps-dev.local:8000"
    error_message = "workers dial shard 0 and learn the other shards from it"
  }

  # The finished job may scale every server shard down.
  assert {
    condition = anytrue([for s in jsondecode(aws_iam_role_policy.task["parameter_server"].policy).Statement :
    contains(s.Action, "ecs:UpdateService") && toset(s.Resource) == toset([for name in ["parameter-server", "parameter-server-1", "parameter-server-2", "worker"] : "arn:aws:ecs:us-west-2:123456789012:service/distributed-ps-dev-cluster/distributed-ps-dev-${name}"])])
    error_message = "the server may scale exactly this job's services: the workers and every shard"
  }
}

run "stopped_shards_run_nothing" {
  command = apply

  variables {
    shard_count = 2
    running     = false
  }

  assert {
    condition     = length(module.parameter_server.services) == 2 && alltrue([for s in module.parameter_server.services : s.desired_count == 0]) && output.running_tasks == 0
    error_message = "running = false scales every shard to zero"
  }
}

run "rejects_zero_shards" {
  command = plan
  variables {
    shard_count = 0
  }
  expect_failures = [var.shard_count]
}

run "rejects_fractional_shards" {
  command = plan
  variables {
    shard_count = 1.5
  }
  expect_failures = [var.shard_count]
}
