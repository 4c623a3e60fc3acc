# Naming: every resource is named "<project_name>-<environment>-...", so the defaults give the
# documented names (cluster distributed-ps-dev-cluster, DNS parameter-server.distributed-ps-dev.local).

variable "region" {
  description = "AWS region to deploy into. The cost estimate output uses us-west-2 prices."
  type        = string
  default     = "us-west-2"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "The region must be an AWS region code such as us-west-2 or eu-central-1."
  }
}

variable "project_name" {
  description = "Project name, the first part of every resource name."
  type        = string
  default     = "distributed-ps"

  validation {
    # Kept short because the S3 bucket prefix ("<project>-<env>-data-") may be at most 37 characters.
    condition     = can(regex("^[a-z][a-z0-9-]{0,19}$", var.project_name))
    error_message = "The project_name must be 1-20 characters of lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "environment" {
  description = "Environment name (dev, staging, ...), the second part of every resource name."
  type        = string
  default     = "dev"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,9}$", var.environment))
    error_message = "The environment must be 1-10 characters of lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "image_tag" {
  description = "Tag of the server and worker images in ECR (deploy.sh passes the git commit and writes it to image_tag.auto.tfvars, so later plain `terraform apply` runs keep it)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag))
    error_message = "The image_tag must be a valid Docker tag: up to 128 letters, digits, '_', '.', '-', not starting with '.' or '-'."
  }
}

variable "cpu_architecture" {
  description = "CPU architecture of the Fargate tasks: X86_64, or ARM64 (about 20% cheaper, and native for Apple-silicon builders). Images must be built for the same architecture (deploy.sh --platform)."
  type        = string
  default     = "X86_64"

  validation {
    condition     = contains(["X86_64", "ARM64"], var.cpu_architecture)
    error_message = "The cpu_architecture must be X86_64 or ARM64 (upper case, as ECS spells it)."
  }
}

variable "worker_count" {
  description = "Number of worker tasks; also the TOTAL_WORKERS_EXPECTED the server waits for."
  type        = number
  default     = 16

  validation {
    condition     = var.worker_count >= 1 && var.worker_count <= 200 && floor(var.worker_count) == var.worker_count
    error_message = "The worker_count must be a whole number from 1 to 200."
  }
}

variable "shard_count" {
  description = "Number of parameter-server shards: separate server services that each hold a size-balanced part of the model's tensors. Shard 0 keeps the name parameter-server.<namespace>; shard k > 0 is parameter-server-<k>.<namespace>. 1 = one server holding everything."
  type        = number
  default     = 1

  validation {
    condition     = var.shard_count >= 1 && var.shard_count <= 16 && floor(var.shard_count) == var.shard_count
    error_message = "The shard_count must be a whole number from 1 to 16."
  }
}

variable "running" {
  description = "Whether the services run tasks. false scales both services to zero and keeps everything else (images, bucket, logs); true starts a new training run."
  type        = bool
  default     = true
}

variable "parameter_server_cpu" {
  description = "Fargate CPU units for the parameter server task (1024 = 1 vCPU)."
  type        = number
  default     = 2048

  validation {
    condition     = contains(keys(local.fargate_memory_options), tostring(var.parameter_server_cpu))
    error_message = "The parameter_server_cpu must be a Fargate CPU value: ${local.fargate_cpu_values}."
  }
}

variable "parameter_server_memory" {
  description = "Fargate memory (MiB) for the parameter server task; must be valid for parameter_server_cpu."
  type        = number
  default     = 4096

  validation {
    condition     = contains(lookup(local.fargate_memory_options, tostring(var.parameter_server_cpu), []), var.parameter_server_memory)
    error_message = "The parameter_server_memory (${var.parameter_server_memory}) is not a Fargate size for parameter_server_cpu ${var.parameter_server_cpu}, which takes: ${join(", ", lookup(local.fargate_memory_options, tostring(var.parameter_server_cpu), []))} MiB."
  }
}

variable "worker_cpu" {
  description = "Fargate CPU units for each worker task (1024 = 1 vCPU)."
  type        = number
  default     = 2048

  validation {
    condition     = contains(keys(local.fargate_memory_options), tostring(var.worker_cpu))
    error_message = "The worker_cpu must be a Fargate CPU value: ${local.fargate_cpu_values}."
  }
}

variable "worker_memory" {
  description = "Fargate memory (MiB) for each worker task; must be valid for worker_cpu."
  type        = number
  default     = 4096

  validation {
    condition     = contains(lookup(local.fargate_memory_options, tostring(var.worker_cpu), []), var.worker_memory)
    error_message = "The worker_memory (${var.worker_memory}) is not a Fargate size for worker_cpu ${var.worker_cpu}, which takes: ${join(", ", lookup(local.fargate_memory_options, tostring(var.worker_cpu), []))} MiB."
  }
}

variable "vpc_cidr" {
  description = "CIDR block of the VPC."
  type        = string
  default     = "10.0.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0))
    error_message = "The vpc_cidr must be an IPv4 CIDR block such as 10.0.0.0/16."
  }
}

variable "public_subnet_cidrs" {
  description = "CIDR blocks of the public subnets, inside vpc_cidr; spread over the region's availability zones (at least two)."
  type        = list(string)
  default     = ["10.0.1.0/24", "10.0.2.0/24"]

  validation {
    condition     = length(var.public_subnet_cidrs) >= 2 && alltrue([for c in var.public_subnet_cidrs : can(cidrhost(c, 0))])
    error_message = "The public_subnet_cidrs must list at least two IPv4 CIDR blocks (one per availability zone)."
  }
}

variable "server_port" {
  description = "TCP port the parameter server listens on for gRPC (SERVER_PORT); workers connect to it."
  type        = number
  default     = 8000

  validation {
    condition     = var.server_port >= 1024 && var.server_port <= 65535 && floor(var.server_port) == var.server_port
    error_message = "The server_port must be a whole number from 1024 to 65535 (the containers run as a non-root user)."
  }
}

variable "server_mode" {
  description = "Training mode of the parameter server (SERVER_MODE): sync (barrier per step), async, or ssp (stale-synchronous, see staleness_bound)."
  type        = string
  default     = "sync"
}

# Training knobs below default to null: the variable is then not passed, and the code's own default
# applies. They, server_mode and the *_extra_environment maps are checked at plan time against what
# the programs accept (container-environment.tf), with the programs' own rules.

variable "staleness_bound" {
  description = "STALENESS_BOUND: how many steps the fastest worker may run ahead in ssp mode. null = code default."
  type        = number
  default     = null
}

variable "optimizer" {
  description = "OPTIMIZER applied by the server: sgd, momentum or adam. null = code default."
  type        = string
  default     = null
}

variable "learning_rate" {
  description = "LEARNING_RATE of the server's optimizer. null = code default."
  type        = number
  default     = null
}

variable "lr_schedule" {
  description = "LR_SCHEDULE: constant, step or cosine. null = code default."
  type        = string
  default     = null
}

variable "lease_ms" {
  description = "LEASE_MS: milliseconds a worker may stay silent before the server drops it. null = code default."
  type        = number
  default     = null
}

variable "batch_size" {
  description = "BATCH_SIZE per worker step. null = code default."
  type        = number
  default     = null
}

variable "epochs" {
  description = "EPOCHS to train. null = code default."
  type        = number
  default     = null
}

variable "seed" {
  description = "SEED for the workers' data shuffling and initialisation. null = code default."
  type        = number
  default     = null
}

variable "dataset" {
  description = "DATASET the workers train on (one the workers know: docs/configuration.md). null = code default."
  type        = string
  default     = null
}

variable "model" {
  description = "MODEL the workers train (one the workers know: docs/configuration.md). null = code default."
  type        = string
  default     = null
}

variable "log_retention_days" {
  description = "Days CloudWatch keeps the task logs."
  type        = number
  default     = 7

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "The log_retention_days must be a CloudWatch retention value: 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288 or 3653."
  }
}

variable "create_iam_roles" {
  description = "false (default): use the existing role named lab_role_name for everything, as AWS Academy accounts cannot create roles. true: create least-privilege execution and task roles."
  type        = bool
  default     = false
}

variable "lab_role_name" {
  description = "Name of the existing IAM role used when create_iam_roles is false."
  type        = string
  default     = "LabRole"

  validation {
    condition     = can(regex("^[\\w+=,.@-]{1,64}$", var.lab_role_name))
    error_message = "The lab_role_name must be an IAM role name (1-64 characters of letters, digits and +=,.@_-)."
  }
}

variable "ecr_keep_images" {
  description = "How many images each ECR repository keeps; older ones are expired."
  type        = number
  default     = 10

  validation {
    condition     = var.ecr_keep_images >= 1 && var.ecr_keep_images <= 1000 && floor(var.ecr_keep_images) == var.ecr_keep_images
    error_message = "The ecr_keep_images must be a whole number from 1 to 1000."
  }
}

variable "bucket_force_destroy" {
  description = "Whether destroy deletes the S3 bucket together with its datasets, checkpoints and models. Set false to keep them (destroy then fails until the bucket is emptied by hand)."
  type        = bool
  default     = true
}

variable "generate_auth_token" {
  description = "Whether to generate the shared AUTH_TOKEN every RPC must carry: a random 48-character secret kept in an SSM SecureString parameter and given to both containers as an ECS secret (never plain text in the task definition). Ignored when auth_token_ssm_parameter_arn is set."
  type        = bool
  default     = true
}

variable "auth_token_ssm_parameter_arn" {
  description = "Optional ARN of an existing SSM SecureString parameter holding the shared AUTH_TOKEN, instead of a generated one; given to both containers as an ECS secret."
  type        = string
  default     = null

  validation {
    condition     = can(regex("^arn:[a-z-]+:ssm:[a-z0-9-]+:[0-9]{12}:parameter/.+$", coalesce(var.auth_token_ssm_parameter_arn, "arn:aws:ssm:us-west-2:000000000000:parameter/none")))
    error_message = "The auth_token_ssm_parameter_arn must be an SSM parameter ARN (arn:aws:ssm:REGION:ACCOUNT:parameter/NAME)."
  }
}

variable "server_extra_environment" {
  description = "More environment variables for the parameter server (e.g. { CHECKPOINT_KEEP = \"3\", LOG_LEVEL = \"debug\" }), for settings without a variable of their own here."
  type        = map(string)
  default     = {}

  validation {
    condition = alltrue([for k in keys(var.server_extra_environment) :
      can(regex("^[A-Z_][A-Z0-9_]*$", k)) && !contains([
        "AWS_REGION", "S3_BUCKET", "ECS_CLUSTER", "SERVER_SERVICE", "WORKER_SERVICE", "SERVER_PORT",
        "TOTAL_WORKERS_EXPECTED", "SERVER_MODE", "STALENESS_BOUND", "OPTIMIZER", "LEARNING_RATE",
        "LR_SCHEDULE", "LEASE_MS", "CHECKPOINT_URI", "AUTH_TOKEN", "SHARD_INDEX", "SHARD_ADDRESSES",
        "DATASET", "MODEL", "BATCH_SIZE", "EPOCHS", "SEED", "TRAIN_EXAMPLES", "LOCAL_STEPS",
    ], k)])
    error_message = "The server_extra_environment keys must be upper-case environment names, and not ones set by other variables (SERVER_MODE, LEARNING_RATE, ...: use those variables; the run's identity, DATASET, SEED, TRAIN_EXAMPLES, ..., comes from the workers' settings)."
  }
}

variable "worker_extra_environment" {
  description = "More environment variables for the workers (e.g. { TRAIN_EXAMPLES = \"60000\" }), for settings without a variable of their own here."
  type        = map(string)
  default     = {}

  validation {
    condition = alltrue([for k in keys(var.worker_extra_environment) :
      can(regex("^[A-Z_][A-Z0-9_]*$", k)) && !contains([
        "AWS_REGION", "S3_BUCKET", "ECS_CLUSTER", "SERVER_SERVICE", "WORKER_SERVICE",
        "PARAMETER_SERVER_ADDRESS", "DATA_BUCKET", "BATCH_SIZE", "EPOCHS", "SEED", "DATASET", "MODEL",
        "AUTH_TOKEN",
    ], k)])
    error_message = "The worker_extra_environment keys must be upper-case environment names, and not ones set by other variables (EPOCHS, BATCH_SIZE, ...: use those variables)."
  }
}
