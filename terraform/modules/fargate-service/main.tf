# The ECS services of one part of the job — the parameter server's shards, or the workers — which
# differ only in name, container definition and Cloud Map registration. What every service of the
# job shares is written here once: Fargate in the job's subnets, the writable /tmp volume beside a
# read-only root, and a rollout that stops the old tasks before starting new ones.

resource "aws_ecs_task_definition" "this" {
  count = length(var.names)

  family                   = var.names[count.index]
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = tostring(var.cpu)
  memory                   = tostring(var.memory)
  execution_role_arn       = var.job.execution_role_arn
  task_role_arn            = var.task_role_arn

  container_definitions = var.container_definitions[count.index]

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.job.cpu_architecture
  }

  volume {
    name = "tmp"
  }
}

resource "aws_ecs_service" "this" {
  count = length(var.names)

  name             = var.names[count.index]
  cluster          = var.job.cluster_id
  task_definition  = aws_ecs_task_definition.this[count.index].arn
  desired_count    = var.desired_count
  launch_type      = "FARGATE"
  platform_version = "LATEST"
  # A new image is a new training run. Old and new tasks must not overlap: two servers would split
  # the workers, and workers of two versions would train one model with two codes.
  deployment_minimum_healthy_percent = 0
  deployment_maximum_percent         = 100
  propagate_tags                     = "SERVICE"

  network_configuration {
    subnets          = var.job.subnet_ids
    security_groups  = var.security_group_ids
    assign_public_ip = true
  }

  dynamic "service_registries" {
    for_each = length(var.registry_arns) == 0 ? [] : [var.registry_arns[count.index]]
    content {
      registry_arn = service_registries.value
    }
  }

  # Stops a deployment whose tasks cannot start (e.g. an image built for the wrong architecture)
  # instead of launching replacements without end.
  deployment_circuit_breaker {
    enable   = true
    rollback = false
  }
}
