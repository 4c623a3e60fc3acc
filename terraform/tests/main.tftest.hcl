# Offline tests: the AWS provider is mocked (tests/aws/aws.tfmock.hcl), so `apply` runs create
# nothing and cost nothing.

mock_provider "aws" {
  source = "./tests/aws"
}

variables {
  image_tag = "0123abcd4567"
}

run "defaults_match_the_documented_deployment" {
  command = apply

  # Names the README's commands use verbatim.
  assert {
    condition     = aws_ecs_cluster.main.name == "distributed-ps-dev-cluster"
    error_message = "cluster name must be distributed-ps-dev-cluster"
  }
  assert {
    condition     = module.parameter_server.services[0].name == "distributed-ps-dev-parameter-server" && module.worker.services[0].name == "distributed-ps-dev-worker"
    error_message = "service names must be distributed-ps-dev-parameter-server and distributed-ps-dev-worker"
  }
  assert {
    condition     = aws_cloudwatch_log_group.parameter_server.name == "/ecs/distributed-ps-dev-parameter-server" && aws_cloudwatch_log_group.worker.name == "/ecs/distributed-ps-dev-worker"
    error_message = "log groups must be /ecs/distributed-ps-dev-parameter-server and /ecs/distributed-ps-dev-worker"
  }
  assert {
    condition     = aws_cloudwatch_log_group.parameter_server.retention_in_days == 7 && aws_cloudwatch_log_group.worker.retention_in_days == 7
    error_message = "log retention must default to 7 days"
  }
  assert {
    condition     = aws_cloudwatch_log_group.container_insights.name == "/aws/ecs/containerinsights/distributed-ps-dev-cluster/performance" && aws_cloudwatch_log_group.container_insights.retention_in_days == 7
    error_message = "Container Insights' log group must be managed here (the one ECS would write to otherwise, kept forever), with the run's retention"
  }

  # Service discovery: parameter-server.distributed-ps-dev.local:8000
  assert {
    condition     = aws_service_discovery_private_dns_namespace.main.name == "distributed-ps-dev.local"
    error_message = "Cloud Map namespace must be distributed-ps-dev.local"
  }
  assert {
    condition     = aws_service_discovery_private_dns_namespace.main.vpc == aws_vpc.main.id
    error_message = "the private namespace must be attached to the VPC"
  }
  assert {
    condition     = aws_service_discovery_service.parameter_server[0].name == "parameter-server" && one(aws_service_discovery_service.parameter_server[0].dns_config[0].dns_records).type == "A"
    error_message = "Cloud Map service must be parameter-server with an A record"
  }
  assert {
    condition     = output.parameter_server_dns_name == "parameter-server.distributed-ps-dev.local" && output.parameter_server_address == "parameter-server.distributed-ps-dev.local:8000"
    error_message = "DNS name / address outputs are wrong: ${output.parameter_server_address}"
  }
  assert {
    condition     = one(module.parameter_server.services[0].service_registries).registry_arn == aws_service_discovery_service.parameter_server[0].arn
    error_message = "the server service must register in Cloud Map"
  }
  assert {
    condition     = aws_vpc.main.enable_dns_support && aws_vpc.main.enable_dns_hostnames
    error_message = "private DNS needs DNS support and hostnames on the VPC"
  }

  # Network: two subnets in two different zones taken from the data source.
  assert {
    condition     = length(aws_subnet.public) == 2 && aws_subnet.public[0].availability_zone == "us-west-2a" && aws_subnet.public[1].availability_zone == "us-west-2b"
    error_message = "expected two public subnets in us-west-2a and us-west-2b"
  }
  assert {
    condition     = length(aws_route_table_association.public) == 2 && one(aws_route_table.public.route).gateway_id == aws_internet_gateway.main.id
    error_message = "both subnets must route 0.0.0.0/0 through the internet gateway"
  }

  # The only ingress: the gRPC port, from the workers' security group, no CIDR.
  assert {
    condition     = aws_vpc_security_group_ingress_rule.parameter_server_from_workers.from_port == 8000 && aws_vpc_security_group_ingress_rule.parameter_server_from_workers.to_port == 8000 && aws_vpc_security_group_ingress_rule.parameter_server_from_workers.ip_protocol == "tcp"
    error_message = "server ingress must be tcp/8000"
  }
  assert {
    condition     = aws_vpc_security_group_ingress_rule.parameter_server_from_workers.referenced_security_group_id == aws_security_group.worker.id && aws_vpc_security_group_ingress_rule.parameter_server_from_workers.cidr_ipv4 == null
    error_message = "server ingress must come from the worker security group only"
  }
  assert {
    condition     = aws_vpc_security_group_ingress_rule.parameter_server_from_workers.security_group_id == aws_security_group.parameter_server.id
    error_message = "the ingress rule must belong to the parameter server's group"
  }
  assert {
    condition     = aws_vpc_security_group_egress_rule.worker_to_parameter_server.referenced_security_group_id == aws_security_group.parameter_server.id && aws_vpc_security_group_egress_rule.worker_to_parameter_server.from_port == 8000
    error_message = "workers must be allowed out to the server's port"
  }
  assert {
    condition = alltrue([for task, group in { parameter_server = aws_security_group.parameter_server.id, worker = aws_security_group.worker.id } :
      aws_vpc_security_group_egress_rule.https[task].security_group_id == group && aws_vpc_security_group_egress_rule.https[task].from_port == 443 &&
    aws_vpc_security_group_egress_rule.https[task].to_port == 443 && aws_vpc_security_group_egress_rule.https[task].cidr_ipv4 == "0.0.0.0/0"])
    error_message = "both groups must be allowed out on HTTPS (ECR, S3, logs, the ECS API), and only on 443"
  }

  # Desired counts: one server, worker_count (16 by default) workers.
  assert {
    condition     = module.parameter_server.services[0].desired_count == 1 && module.worker.services[0].desired_count == 16
    error_message = "desired counts must be 1 server and 16 workers"
  }
  assert {
    condition     = module.parameter_server.services[0].deployment_maximum_percent == 100 && module.parameter_server.services[0].deployment_minimum_healthy_percent == 0
    error_message = "a server deployment must never run two servers at once"
  }
  assert {
    condition     = module.worker.services[0].launch_type == "FARGATE" && one(module.worker.services[0].network_configuration).assign_public_ip
    error_message = "workers run on Fargate with a public IP (no NAT gateway)"
  }
  assert {
    condition     = one(module.worker.services[0].network_configuration).security_groups == toset([aws_security_group.worker.id]) && one(module.parameter_server.services[0].network_configuration).security_groups == toset([aws_security_group.parameter_server.id])
    error_message = "each service must use its own security group"
  }

  # Architecture defaults to X86_64.
  assert {
    condition     = module.parameter_server.task_definitions[0].runtime_platform[0].cpu_architecture == "X86_64" && module.worker.task_definitions[0].runtime_platform[0].cpu_architecture == "X86_64"
    error_message = "default architecture must be X86_64"
  }
  assert {
    condition     = module.parameter_server.task_definitions[0].cpu == "2048" && module.parameter_server.task_definitions[0].memory == "4096" && module.worker.task_definitions[0].cpu == "2048" && module.worker.task_definitions[0].memory == "4096"
    error_message = "default task size must be 2 vCPU / 4 GB as documented"
  }

  # IAM: LabRole everywhere by default, no roles created.
  assert {
    condition     = module.parameter_server.task_definitions[0].execution_role_arn == "arn:aws:iam::123456789012:role/LabRole" && module.parameter_server.task_definitions[0].task_role_arn == "arn:aws:iam::123456789012:role/LabRole" && module.worker.task_definitions[0].task_role_arn == "arn:aws:iam::123456789012:role/LabRole"
    error_message = "by default every role must be LabRole"
  }
  assert {
    condition     = length(aws_iam_role.execution) == 0 && length(aws_iam_role.task) == 0
    error_message = "no IAM roles may be created by default"
  }

  # Container definitions, decoded.
  assert {
    condition = {
      for e in jsondecode(module.parameter_server.task_definitions[0].container_definitions)[0].environment : e.name => e.value
      } == {
      SERVER_PORT    = "8000"
      SERVER_MODE    = "sync"
      STEP_THREADS   = "2"
      CHECKPOINT_URI = "s3://${aws_s3_bucket.data.id}/checkpoints"
      S3_BUCKET      = aws_s3_bucket.data.id
      AWS_REGION     = "us-west-2"
      ECS_CLUSTER    = "distributed-ps-dev-cluster"
      SERVER_SERVICE = "distributed-ps-dev-parameter-server"
      WORKER_SERVICE = "distributed-ps-dev-worker"
    }
    error_message = "server environment is wrong: ${jsonencode(jsondecode(module.parameter_server.task_definitions[0].container_definitions)[0].environment)}"
  }
  assert {
    condition = {
      for e in jsondecode(module.worker.task_definitions[0].container_definitions)[0].environment : e.name => e.value
      } == {
      ENGINE_THREADS           = "2"
      PARAMETER_SERVER_ADDRESS = "parameter-server.distributed-ps-dev.local:8000"
      S3_BUCKET                = aws_s3_bucket.data.id
      DATA_BUCKET              = aws_s3_bucket.data.id
      AWS_REGION               = "us-west-2"
      ECS_CLUSTER              = "distributed-ps-dev-cluster"
      SERVER_SERVICE           = "distributed-ps-dev-parameter-server"
      WORKER_SERVICE           = "distributed-ps-dev-worker"
    }
    error_message = "worker environment is wrong: ${jsonencode(jsondecode(module.worker.task_definitions[0].container_definitions)[0].environment)}"
  }
  assert {
    condition     = jsondecode(module.parameter_server.task_definitions[0].container_definitions)[0].image == "123456789012.dkr.ecr.us-west-2.amazonaws.com/distributed-ps-dev-parameter-server:0123abcd4567" && jsondecode(module.worker.task_definitions[0].container_definitions)[0].image == "123456789012.dkr.ecr.us-west-2.amazonaws.com/distributed-ps-dev-worker:0123abcd4567"
    error_message = "containers must run the ECR images at image_tag"
  }
  assert {
    condition     = jsondecode(module.parameter_server.task_definitions[0].container_definitions)[0].portMappings[0].containerPort == 8000
    error_message = "server container must expose port 8000"
  }
  assert {
    condition     = jsondecode(module.parameter_server.task_definitions[0].container_definitions)[0].healthCheck.command == ["CMD", "node", "server/src/healthcheck.ts"]
    error_message = "server health check must run server/src/healthcheck.ts"
  }
  assert {
    condition     = jsondecode(module.parameter_server.task_definitions[0].container_definitions)[0].stopTimeout == 120
    error_message = "server must get Fargate's maximum 120 s to checkpoint after SIGTERM"
  }
  assert {
    condition = alltrue([for td in [module.parameter_server.task_definitions[0], module.worker.task_definitions[0]] :
      jsondecode(td.container_definitions)[0].user == "1000:1000" &&
      jsondecode(td.container_definitions)[0].readonlyRootFilesystem &&
      jsondecode(td.container_definitions)[0].linuxParameters.initProcessEnabled &&
      jsondecode(td.container_definitions)[0].mountPoints[0].containerPath == "/tmp"
    ])
    error_message = "containers must run as 1000:1000, read-only root with /tmp mounted, and an init process"
  }
  assert {
    condition     = jsondecode(module.parameter_server.task_definitions[0].container_definitions)[0].logConfiguration.options["awslogs-group"] == "/ecs/distributed-ps-dev-parameter-server" && jsondecode(module.worker.task_definitions[0].container_definitions)[0].logConfiguration.options["awslogs-group"] == "/ecs/distributed-ps-dev-worker"
    error_message = "containers must log to their awslogs groups"
  }
  assert {
    condition = alltrue([for td in [module.parameter_server.task_definitions[0], module.worker.task_definitions[0]] :
    jsondecode(td.container_definitions)[0].secrets == [{ name = "AUTH_TOKEN", valueFrom = aws_ssm_parameter.auth_token[0].arn }]])
    error_message = "by default both containers get the generated AUTH_TOKEN as a secret from SSM"
  }
  assert {
    condition     = aws_ssm_parameter.auth_token[0].type == "SecureString" && length(aws_ssm_parameter.auth_token[0].value) == 48
    error_message = "the generated token is a 48-character SecureString"
  }
  assert {
    condition = alltrue([for td in [module.parameter_server.task_definitions[0], module.worker.task_definitions[0]] :
    !can(jsondecode(td.container_definitions)[0].environment[index([for e in jsondecode(td.container_definitions)[0].environment : e.name], "AUTH_TOKEN")])])
    error_message = "the token must never appear as a plain environment variable"
  }

  # ECR and S3.
  assert {
    condition     = aws_ecr_repository.parameter_server.force_delete && aws_ecr_repository.worker.force_delete && aws_ecr_repository.worker.image_scanning_configuration[0].scan_on_push && aws_ecr_repository.worker.image_tag_mutability == "IMMUTABLE"
    error_message = "ECR repositories must scan on push, be immutable and deletable with images"
  }
  assert {
    condition     = jsondecode(aws_ecr_lifecycle_policy.worker.policy).rules[1].selection.countNumber == 10
    error_message = "ECR lifecycle must keep the last 10 images"
  }
  assert {
    condition     = aws_s3_bucket_public_access_block.data.block_public_acls && aws_s3_bucket_public_access_block.data.restrict_public_buckets && aws_s3_bucket_versioning.data.versioning_configuration[0].status == "Enabled"
    error_message = "bucket must block public access and be versioned"
  }
  assert {
    condition     = one(one(aws_s3_bucket_server_side_encryption_configuration.data.rule).apply_server_side_encryption_by_default).sse_algorithm == "AES256"
    error_message = "bucket must be encrypted"
  }
  assert {
    condition     = output.s3_bucket_name == aws_s3_bucket.data.id && startswith(aws_s3_bucket.data.bucket_prefix, "distributed-ps-dev-data-")
    error_message = "bucket output/prefix is wrong"
  }

  # 17 tasks x (2 vCPU x 0.04048 + 4 GB x 0.004445 + public IPv4 0.005) = 1.76358 USD/h
  assert {
    condition     = output.estimated_cost_per_hour_usd == 1.7636 && output.running_tasks == 17
    error_message = "estimated cost must be 1.7636 USD/h for 17 x86 tasks of 2 vCPU/4 GB, got ${output.estimated_cost_per_hour_usd}"
  }
}

run "worker_count_and_mode_flow_into_services_and_containers" {
  command = apply

  variables {
    worker_count    = 4
    server_mode     = "ssp"
    staleness_bound = 3
    optimizer       = "adam"
    learning_rate   = 0.001
    lr_schedule     = "cosine"
    lease_ms        = 15000
    batch_size      = 64
    epochs          = 2
    seed            = 42
    dataset         = "synthetic"
    model           = "mlp"
    server_port     = 9000

    server_extra_environment = { CHECKPOINT_KEEP = "3" }
    worker_extra_environment = { TRAIN_EXAMPLES = "60000", LOG_LEVEL = "debug" }
  }

  assert {
    condition     = module.worker.services[0].desired_count == 4 && module.parameter_server.services[0].desired_count == 1
    error_message = "worker desired count must follow worker_count"
  }
  assert {
    condition = {
      for e in jsondecode(module.parameter_server.task_definitions[0].container_definitions)[0].environment : e.name => e.value
      if contains(["TOTAL_WORKERS_EXPECTED", "SERVER_MODE", "STALENESS_BOUND", "OPTIMIZER", "LEARNING_RATE", "LR_SCHEDULE", "LEASE_MS", "SERVER_PORT", "CHECKPOINT_KEEP"], e.name)
      } == {
      SERVER_MODE     = "ssp"
      STALENESS_BOUND = "3"
      OPTIMIZER       = "adam"
      LEARNING_RATE   = "0.001"
      LR_SCHEDULE     = "cosine"
      LEASE_MS        = "15000"
      SERVER_PORT     = "9000"
      CHECKPOINT_KEEP = "3"
    }
    error_message = "server environment must carry the training settings (and no worker count: the server follows the worker service's)"
  }
  assert {
    condition = {
      for e in jsondecode(module.worker.task_definitions[0].container_definitions)[0].environment : e.name => e.value
      if contains(["PARAMETER_SERVER_ADDRESS", "BATCH_SIZE", "EPOCHS", "SEED", "DATASET", "MODEL", "TRAIN_EXAMPLES", "LOG_LEVEL"], e.name)
      } == {
      PARAMETER_SERVER_ADDRESS = "parameter-server.distributed-ps-dev.local:9000"
      BATCH_SIZE               = "64"
      EPOCHS                   = "2"
      SEED                     = "42"
      DATASET                  = "synthetic"
      MODEL                    = "mlp"
      TRAIN_EXAMPLES           = "60000"
      LOG_LEVEL                = "debug"
    }
    error_message = "worker environment must carry the training settings and the server address"
  }
  assert {
    condition = {
      for e in jsondecode(module.parameter_server.task_definitions[0].container_definitions)[0].environment : e.name => e.value
      if contains(["DATASET", "MODEL", "BATCH_SIZE", "EPOCHS", "SEED", "TRAIN_EXAMPLES", "LOCAL_STEPS"], e.name)
      } == {
      BATCH_SIZE     = "64"
      EPOCHS         = "2"
      SEED           = "42"
      DATASET        = "synthetic"
      MODEL          = "mlp"
      TRAIN_EXAMPLES = "60000"
    }
    error_message = "the server must know the run's identity (the workers' dataset, model, batch size, epochs, seed, training examples) to refuse a mismatching worker"
  }
  assert {
    condition     = aws_vpc_security_group_ingress_rule.parameter_server_from_workers.from_port == 9000 && jsondecode(module.parameter_server.task_definitions[0].container_definitions)[0].portMappings[0].containerPort == 9000
    error_message = "ingress rule and container port must follow server_port"
  }
  # 5 tasks x 0.10374
  assert {
    condition     = output.estimated_cost_per_hour_usd == 0.5187
    error_message = "cost must scale with worker_count, got ${output.estimated_cost_per_hour_usd}"
  }
}

run "not_running_scales_both_services_to_zero" {
  command = plan

  variables {
    running = false
  }

  assert {
    condition     = module.parameter_server.services[0].desired_count == 0 && module.worker.services[0].desired_count == 0
    error_message = "running = false must scale both services to zero"
  }
  assert {
    condition     = output.estimated_cost_per_hour_usd == 0 && output.running_tasks == 0
    error_message = "nothing running must cost nothing"
  }
}

run "arm64_switches_both_task_definitions_and_the_price" {
  command = apply

  variables {
    cpu_architecture = "ARM64"
  }

  assert {
    condition     = module.parameter_server.task_definitions[0].runtime_platform[0].cpu_architecture == "ARM64" && module.worker.task_definitions[0].runtime_platform[0].cpu_architecture == "ARM64"
    error_message = "cpu_architecture = ARM64 must reach both task definitions"
  }
  assert {
    condition     = module.worker.task_definitions[0].runtime_platform[0].operating_system_family == "LINUX"
    error_message = "tasks must be Linux"
  }
  # 17 x (2 x 0.03238 + 4 x 0.00356 + 0.005) = 1.428
  assert {
    condition     = output.estimated_cost_per_hour_usd == 1.428
    error_message = "ARM64 price must be used, got ${output.estimated_cost_per_hour_usd}"
  }
}

run "custom_sizes_and_retention" {
  command = plan

  variables {
    parameter_server_cpu    = 4096
    parameter_server_memory = 30720
    worker_cpu              = 256
    worker_memory           = 512
    log_retention_days      = 30
    environment             = "prod"
  }

  assert {
    condition     = module.parameter_server.task_definitions[0].memory == "30720" && module.worker.task_definitions[0].cpu == "256"
    error_message = "task sizes must follow the variables"
  }
  assert {
    condition     = aws_cloudwatch_log_group.worker.retention_in_days == 30 && aws_cloudwatch_log_group.parameter_server.name == "/ecs/distributed-ps-prod-parameter-server"
    error_message = "retention and names must follow the variables"
  }
  assert {
    condition     = [for e in jsondecode(module.parameter_server.task_definitions[0].container_definitions)[0].environment : e.value if e.name == "STEP_THREADS"] == ["4"]
    error_message = "a 4-vCPU server applies updates on 4 threads"
  }
  assert {
    condition     = [for e in jsondecode(module.worker.task_definitions[0].container_definitions)[0].environment : e.value if e.name == "ENGINE_THREADS"] == ["1"]
    error_message = "a quarter-vCPU worker runs ONNX Runtime on one thread"
  }
}

run "small_server_steps_on_one_thread_unless_told_otherwise" {
  command = plan

  variables {
    parameter_server_cpu     = 512
    parameter_server_memory  = 1024
    server_extra_environment = { LOG_LEVEL = "debug" }
  }

  assert {
    condition     = [for e in jsondecode(module.parameter_server.task_definitions[0].container_definitions)[0].environment : e.value if e.name == "STEP_THREADS"] == ["1"]
    error_message = "half a vCPU: no helper threads"
  }
}

run "step_threads_can_be_set_through_the_extra_environment" {
  command = plan

  variables {
    server_extra_environment = { STEP_THREADS = "3" }
  }

  assert {
    condition     = [for e in jsondecode(module.parameter_server.task_definitions[0].container_definitions)[0].environment : e.value if e.name == "STEP_THREADS"] == ["3"]
    error_message = "server_extra_environment must be able to set STEP_THREADS"
  }
}

run "created_roles_replace_lab_role" {
  command = apply

  variables {
    create_iam_roles             = true
    auth_token_ssm_parameter_arn = "arn:aws:ssm:us-west-2:123456789012:parameter/distributed-ps/auth-token"
  }

  assert {
    condition     = module.parameter_server.task_definitions[0].execution_role_arn == aws_iam_role.execution[0].arn && module.worker.task_definitions[0].execution_role_arn == aws_iam_role.execution[0].arn
    error_message = "task definitions must use the created execution role"
  }
  assert {
    condition     = module.parameter_server.task_definitions[0].task_role_arn == aws_iam_role.task["parameter_server"].arn && module.worker.task_definitions[0].task_role_arn == aws_iam_role.task["worker"].arn
    error_message = "task definitions must use their own created task roles"
  }
  assert {
    condition     = jsondecode(aws_iam_role.task["worker"].assume_role_policy).Statement[0].Principal.Service == "ecs-tasks.amazonaws.com"
    error_message = "task roles must be assumable by ECS tasks"
  }
  assert {
    condition = anytrue([for s in jsondecode(aws_iam_role_policy.task["parameter_server"].policy).Statement :
    contains(s.Action, "ecs:UpdateService") && toset(s.Resource) == toset([module.parameter_server.services[0].id, module.worker.services[0].id])])
    error_message = "the server may scale exactly this job's two services (their ARNs spelled from the cluster's, as ECS gives them)"
  }
  assert {
    condition = alltrue([for s in jsondecode(aws_iam_role_policy.task["worker"].policy).Statement :
    !contains(s.Action, "s3:PutObject") && !contains(s.Action, "s3:DeleteObject")])
    error_message = "workers only read the bucket"
  }
  assert {
    condition = anytrue([for s in jsondecode(aws_iam_role_policy.execution[0].policy).Statement :
    s.Action == ["ssm:GetParameters"] && s.Resource == ["arn:aws:ssm:us-west-2:123456789012:parameter/distributed-ps/auth-token"]])
    error_message = "the execution role must be able to read the auth token parameter"
  }
  assert {
    condition     = jsondecode(module.worker.task_definitions[0].container_definitions)[0].secrets == [{ name = "AUTH_TOKEN", valueFrom = "arn:aws:ssm:us-west-2:123456789012:parameter/distributed-ps/auth-token" }]
    error_message = "AUTH_TOKEN must be passed as an ECS secret"
  }
}

# --- Rejected inputs.

# Bad values are refused before anything is planned, each by its own variable's validation: one
# run sets many (each of a different variable, so they cannot mask each other), and Terraform names
# any expected refusal that did not happen.
run "rejects_each_invalid_setting" {
  command = plan
  variables {
    worker_cpu               = 3072    # not a Fargate size
    cpu_architecture         = "arm64" # Fargate spells it ARM64
    worker_count             = 0
    log_retention_days       = 10
    public_subnet_cidrs      = ["10.0.1.0/24"]
    worker_extra_environment = { EPOCHS = "3" } # would shadow the epochs variable
    server_extra_environment = { SEED = "7" }   # would set the server's identity apart from the workers'
  }
  expect_failures = [
    var.worker_cpu, var.cpu_architecture, var.worker_count, var.log_retention_days,
    var.public_subnet_cidrs, var.worker_extra_environment, var.server_extra_environment,
  ]
}

# What the containers would refuse at start fails the plan, with the programs' own rules
# (container-environment.tf): one run for each kind of rule, each with one bad value, and one run
# with values at the rules' edges that the programs accept.
run "refuses_a_word_the_server_does_not_know" {
  command = plan
  variables { server_mode = "bsp" }
  expect_failures = [terraform_data.container_environment]
}

run "refuses_a_number_out_of_the_servers_range" {
  command = plan
  variables { learning_rate = 500 }
  expect_failures = [terraform_data.container_environment]
}

run "refuses_an_integer_out_of_the_servers_range" {
  command = plan
  variables { lease_ms = 50 }
  expect_failures = [terraform_data.container_environment]
}

run "refuses_a_fraction_where_the_server_wants_an_integer" {
  command = plan
  variables { server_extra_environment = { CHECKPOINT_KEEP = "2.5" } }
  expect_failures = [terraform_data.container_environment]
}

run "refuses_a_word_the_workers_do_not_know" {
  command = plan
  variables { worker_extra_environment = { PULL_DTYPE = "fp64" } }
  expect_failures = [terraform_data.container_environment]
}

run "accepts_what_the_containers_accept" {
  command = plan
  variables {
    server_mode   = "SSP" # words in any case
    learning_rate = 100
    lease_ms      = 100
    server_extra_environment = {
      CHECKPOINT_KEEP = " 1000 " # trimmed, as the server reads it
      NESTEROV        = "Yes"
      ADAM_EPSILON    = "1e-12"
    }
    worker_extra_environment = { PULL_DTYPE = "bf16" }
  }
  assert {
    condition     = local.environment_problems == []
    error_message = "values the programs accept must pass the plan"
  }
}

run "rejects_memory_a_valid_cpu_cannot_have" {
  command = plan
  variables {
    worker_cpu              = 1024
    worker_memory           = 512
    parameter_server_cpu    = 8192
    parameter_server_memory = 17408 # a 1024 step, but 8 vCPU needs 4096 steps
  }
  expect_failures = [var.worker_memory, var.parameter_server_memory]
}

# deploy.sh's first step: only the repositories, then it reads their URLs from the outputs.
run "ecr_first_step_creates_only_the_repositories_and_their_urls" {
  command = apply
  # A state of its own: nothing from the runs above exists yet, as on a first deploy.
  state_key = "first_deploy"

  plan_options {
    target = [
      aws_ecr_repository.parameter_server,
      aws_ecr_repository.worker,
      aws_ecr_lifecycle_policy.parameter_server,
      aws_ecr_lifecycle_policy.worker,
    ]
  }

  assert {
    condition     = output.parameter_server_ecr_repository_url == "123456789012.dkr.ecr.us-west-2.amazonaws.com/distributed-ps-dev-parameter-server" && output.worker_ecr_repository_url == "123456789012.dkr.ecr.us-west-2.amazonaws.com/distributed-ps-dev-worker"
    error_message = "the repository URLs must be readable after the targeted apply"
  }
}

run "authentication_can_be_turned_off" {
  command = apply

  variables {
    generate_auth_token = false
  }

  assert {
    condition     = length(aws_ssm_parameter.auth_token) == 0 && length(jsondecode(module.worker.task_definitions[0].container_definitions)[0].secrets) == 0
    error_message = "generate_auth_token = false: no parameter and no secret"
  }
}

run "an_existing_token_parameter_is_used_instead" {
  command = apply

  variables {
    auth_token_ssm_parameter_arn = "arn:aws:ssm:us-west-2:123456789012:parameter/mine"
  }

  assert {
    condition     = length(aws_ssm_parameter.auth_token) == 0 && jsondecode(module.parameter_server.task_definitions[0].container_definitions)[0].secrets[0].valueFrom == "arn:aws:ssm:us-west-2:123456789012:parameter/mine"
    error_message = "a given parameter ARN replaces the generated token"
  }
}
