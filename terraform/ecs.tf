# ECS: one parameter server task per shard (shard_count services, found through Cloud Map; shard 0
# as parameter-server, the others as parameter-server-<k>) and worker_count workers.
#
# When training completes the processes exit 0, but an ECS service replaces every stopped task, so
# finished workers would be restarted forever (and get new worker ids). The job therefore scales
# itself down: both containers get ECS_CLUSTER, SERVER_SERVICE and WORKER_SERVICE, and their task
# roles may call ecs:UpdateService on exactly these two services, so the finished job sets both
# desired counts to 0. See README.md "When training completes".

resource "aws_ecs_cluster" "main" {
  name = local.cluster_name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }

  depends_on = [aws_cloudwatch_log_group.container_insights]
}

locals {
  # Given to both containers: where their data lives and which services to scale down at the end.
  job_environment = {
    AWS_REGION     = var.region
    S3_BUCKET      = aws_s3_bucket.data.id
    ECS_CLUSTER    = local.cluster_name
    SERVER_SERVICE = local.parameter_server_name
    WORKER_SERVICE = local.worker_name
  }

  # The run's identity, given to the server as well as the workers: a worker started with other
  # settings (an old task definition, a stray task) is then refused at registration, whoever
  # registers first. TRAIN_EXAMPLES and LOCAL_STEPS come from worker_extra_environment when set there.
  run_identity = {
    DATASET        = var.dataset
    MODEL          = var.model
    BATCH_SIZE     = var.batch_size == null ? null : tostring(var.batch_size)
    EPOCHS         = var.epochs == null ? null : tostring(var.epochs)
    SEED           = var.seed == null ? null : tostring(var.seed)
    TRAIN_EXAMPLES = lookup(var.worker_extra_environment, "TRAIN_EXAMPLES", null)
    LOCAL_STEPS    = lookup(var.worker_extra_environment, "LOCAL_STEPS", null)
  }

  # null values are left out, so the code's own default applies. The *_extra_environment maps come
  # first so they can never override a value that a dedicated variable controls.
  # STEP_THREADS (threads that apply each update together) follows the task's vCPUs, at most 4; it
  # comes before the extra map, which may set it otherwise.
  parameter_server_environment = merge({ STEP_THREADS = tostring(max(1, min(4, floor(var.parameter_server_cpu / 1024)))) }, var.server_extra_environment, local.job_environment, {
    SERVER_PORT = tostring(var.server_port)
    # An unsharded server reads the worker count from the worker service's desired count, and
    # follows it (elastic workers): were worker_count in its task definition, changing it would
    # replace the server task. Sharded servers keep a fixed count.
    TOTAL_WORKERS_EXPECTED = var.shard_count == 1 ? null : tostring(var.worker_count)
    SERVER_MODE            = var.server_mode
    STALENESS_BOUND        = var.staleness_bound == null ? null : tostring(var.staleness_bound)
    OPTIMIZER              = var.optimizer
    LEARNING_RATE          = var.learning_rate == null ? null : tostring(var.learning_rate)
    LR_SCHEDULE            = var.lr_schedule
    LEASE_MS               = var.lease_ms == null ? null : tostring(var.lease_ms)
    CHECKPOINT_URI         = local.checkpoint_uri
  }, local.run_identity)

  # ENGINE_THREADS (ONNX Runtime's threads per operator) follows the task's vCPUs, at least 1; the
  # extra environment may override it.
  worker_environment = merge({ ENGINE_THREADS = tostring(max(1, floor(var.worker_cpu / 1024))) }, var.worker_extra_environment, local.job_environment, local.run_identity, {
    PARAMETER_SERVER_ADDRESS = local.parameter_server_address
    DATA_BUCKET              = aws_s3_bucket.data.id
  })

  # Shard k of a sharded run: its index, every shard's address, and its own service to scale down.
  # Only shard 0 scales the workers: the workers finish every other shard before shard 0, so when
  # shard 0 sees the run complete no worker still has a shard to finish.
  shard_environment = [for k in range(var.shard_count) : merge(local.parameter_server_environment, var.shard_count == 1 ? {} : {
    SHARD_INDEX     = tostring(k)
    SHARD_ADDRESSES = join(",", local.shard_addresses)
    SERVER_SERVICE  = local.shard_service_names[k]
    WORKER_SERVICE  = k == 0 ? local.worker_name : null
  })]

  secrets = local.auth_token_arn == null ? [] : [
    { name = "AUTH_TOKEN", valueFrom = local.auth_token_arn },
  ]

  # Settings both containers share: non-root (the images' uid), read-only root with a writable
  # /tmp, and an init process as PID 1 that forwards SIGTERM to node and reaps zombies.
  container_defaults = {
    essential              = true
    user                   = "1000:1000"
    readonlyRootFilesystem = true
    linuxParameters        = { initProcessEnabled = true }
    mountPoints            = [{ sourceVolume = "tmp", containerPath = "/tmp", readOnly = false }]
    secrets                = local.secrets
  }

  # One container definition per shard (they differ only in environment and log stream prefix).
  parameter_server_container_definitions = [for k in range(var.shard_count) : jsonencode([merge(local.container_defaults, {
    name         = "parameter-server"
    image        = local.parameter_server_image
    portMappings = [{ name = "grpc", containerPort = var.server_port, protocol = "tcp" }]
    environment  = [for name, v in local.shard_environment[k] : { name = name, value = v } if v != null]
    healthCheck = {
      command     = ["CMD", "node", "server/src/healthcheck.ts"]
      interval    = 15
      timeout     = 5
      retries     = 3
      startPeriod = 60
    }
    # Fargate's maximum: time for the server to write its final checkpoint after SIGTERM.
    stopTimeout = 120
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.parameter_server.name
        awslogs-region        = var.region
        awslogs-stream-prefix = local.shard_dns_labels[k]
      }
    }
  })])]

  # No container health check: a worker serves no port, and the server already judges worker
  # liveness through its lease (LEASE_MS). An ECS health check that failed would make ECS replace
  # the worker, which then rejoins under a new id: the churn this setup avoids.
  worker_container_definitions = [jsonencode([merge(local.container_defaults, {
    name        = "worker"
    image       = local.worker_image
    environment = [for k, v in local.worker_environment : { name = k, value = v } if v != null]
    stopTimeout = 30
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.worker.name
        awslogs-region        = var.region
        awslogs-stream-prefix = "worker"
      }
    }
  })])]
}

# One task definition and service per shard: shard 0 is the documented parameter-server, shard k > 0
# parameter-server-<k>; they differ only in name and environment. (A count inside the module, not
# for_each: the shards are 0..K-1, and a deployment made before the shards existed keeps its server
# as [0].)
module "parameter_server" {
  source = "./modules/fargate-service"

  names                 = local.shard_service_names
  container_definitions = local.parameter_server_container_definitions
  registry_arns         = aws_service_discovery_service.parameter_server[*].arn
  cpu                   = var.parameter_server_cpu
  memory                = var.parameter_server_memory
  task_role_arn         = local.task_role_arns.parameter_server
  security_group_ids    = [aws_security_group.parameter_server.id]
  desired_count         = local.parameter_server_desired
  job                   = local.fargate_job

  # With create_iam_roles, the tasks' permissions exist before the first task starts.
  depends_on = [aws_iam_role_policy.execution, aws_iam_role_policy.task]
}

module "worker" {
  source = "./modules/fargate-service"

  names                 = [local.worker_name]
  container_definitions = local.worker_container_definitions
  cpu                   = var.worker_cpu
  memory                = var.worker_memory
  task_role_arn         = local.task_role_arns.worker
  security_group_ids    = [aws_security_group.worker.id]
  desired_count         = local.worker_desired
  job                   = local.fargate_job

  depends_on = [aws_iam_role_policy.execution, aws_iam_role_policy.task]
}

locals {
  fargate_job = {
    cluster_id         = aws_ecs_cluster.main.id
    subnet_ids         = aws_subnet.public[*].id
    cpu_architecture   = var.cpu_architecture
    execution_role_arn = local.execution_role_arn
  }
}

# The task definitions and services were resources of this root module before the module held them:
# moved, a deployment made then keeps them instead of replacing them.
moved {
  from = aws_ecs_task_definition.parameter_server
  to   = module.parameter_server.aws_ecs_task_definition.this
}

moved {
  from = aws_ecs_service.parameter_server
  to   = module.parameter_server.aws_ecs_service.this
}

moved {
  from = aws_ecs_task_definition.worker
  to   = module.worker.aws_ecs_task_definition.this[0]
}

moved {
  from = aws_ecs_service.worker
  to   = module.worker.aws_ecs_service.this[0]
}
