locals {
  name = "${var.project_name}-${var.environment}"

  tags = {
    Project     = var.project_name
    Environment = var.environment
    ManagedBy   = "terraform"
  }

  # Names the documented commands use verbatim (aws logs tail /ecs/<name>-parameter-server, ...).
  cluster_name               = "${local.name}-cluster"
  parameter_server_name      = "${local.name}-parameter-server"
  worker_name                = "${local.name}-worker"
  namespace_name             = "${local.name}.local"
  parameter_server_dns_name  = "parameter-server.${local.namespace_name}"
  parameter_server_address   = "${local.parameter_server_dns_name}:${var.server_port}"
  parameter_server_log_group = "/ecs/${local.parameter_server_name}"
  worker_log_group           = "/ecs/${local.worker_name}"
  parameter_server_desired   = var.running ? 1 : 0 # per shard
  worker_desired             = var.running ? var.worker_count : 0
  parameter_server_image     = "${aws_ecr_repository.parameter_server.repository_url}:${var.image_tag}"
  worker_image               = "${aws_ecr_repository.worker.repository_url}:${var.image_tag}"
  checkpoint_uri             = "s3://${aws_s3_bucket.data.id}/checkpoints"
  availability_zone_names    = data.aws_availability_zones.available.names

  # Sharded servers: shard k's ECS service and Cloud Map name. Shard 0 keeps the documented names,
  # so the workers (which dial shard 0 and learn the others from it) are configured as before.
  shard_service_names = [for k in range(var.shard_count) : k == 0 ? local.parameter_server_name : "${local.parameter_server_name}-${k}"]
  shard_dns_labels    = [for k in range(var.shard_count) : k == 0 ? "parameter-server" : "parameter-server-${k}"]
  shard_addresses     = [for label in local.shard_dns_labels : "${label}.${local.namespace_name}:${var.server_port}"]

  # Fargate task sizes: CPU units -> allowed memory (MiB). Used by the variable validations.
  fargate_memory_options = {
    "256"   = [512, 1024, 2048]
    "512"   = [1024, 2048, 3072, 4096]
    "1024"  = range(2048, 8192 + 1, 1024)
    "2048"  = range(4096, 16384 + 1, 1024)
    "4096"  = range(8192, 30720 + 1, 1024)
    "8192"  = range(16384, 61440 + 1, 4096)
    "16384" = range(32768, 122880 + 1, 8192)
  }
  # The keys in numeric order for error messages (sort() is lexical: pad, sort, unpad).
  fargate_cpu_values = join(", ", [for cpu in sort([for k in keys(local.fargate_memory_options) : format("%05d", k)]) : tonumber(cpu)])
}

data "aws_availability_zones" "available" {
  state = "available"
}

# --- Network: public subnets only. Tasks get public IPs so they can reach ECR, S3 and CloudWatch
# without a NAT gateway (~$0.045/h + data); the security groups admit nothing from the internet.

resource "aws_vpc" "main" {
  cidr_block = var.vpc_cidr
  # Both are required for Cloud Map private DNS names to resolve inside the VPC.
  enable_dns_support   = true
  enable_dns_hostnames = true

  tags = { Name = local.name }
}

resource "aws_internet_gateway" "main" {
  vpc_id = aws_vpc.main.id

  tags = { Name = local.name }
}

resource "aws_subnet" "public" {
  count = length(var.public_subnet_cidrs)

  vpc_id            = aws_vpc.main.id
  cidr_block        = var.public_subnet_cidrs[count.index]
  availability_zone = local.availability_zone_names[count.index % length(local.availability_zone_names)]

  tags = { Name = "${local.name}-public-${count.index + 1}" }

  lifecycle {
    precondition {
      condition     = length(local.availability_zone_names) >= 2
      error_message = "The region ${var.region} has fewer than two available availability zones."
    }
  }
}

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.main.id

  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.main.id
  }

  tags = { Name = "${local.name}-public" }
}

resource "aws_route_table_association" "public" {
  count = length(aws_subnet.public)

  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public.id
}

# --- Security groups. Only the workers' group may open the gRPC port; outbound is HTTPS (ECR,
# S3, CloudWatch Logs, ECS API, dataset downloads) plus the workers' gRPC to the server. DNS to the
# VPC resolver and the task credentials endpoint are link-local and not filtered by groups.

resource "aws_security_group" "parameter_server" {
  name        = local.parameter_server_name
  description = "Parameter server: gRPC from workers only"
  vpc_id      = aws_vpc.main.id

  tags = { Name = local.parameter_server_name }
}

resource "aws_security_group" "worker" {
  name        = local.worker_name
  description = "Workers: no inbound; outbound to the parameter server and HTTPS"
  vpc_id      = aws_vpc.main.id

  tags = { Name = local.worker_name }
}

resource "aws_vpc_security_group_ingress_rule" "parameter_server_from_workers" {
  security_group_id            = aws_security_group.parameter_server.id
  description                  = "gRPC from workers"
  ip_protocol                  = "tcp"
  from_port                    = var.server_port
  to_port                      = var.server_port
  referenced_security_group_id = aws_security_group.worker.id
}

resource "aws_vpc_security_group_egress_rule" "https" {
  for_each = {
    parameter_server = { group = aws_security_group.parameter_server.id, to = "AWS APIs (ECR, S3, CloudWatch Logs, ECS)" }
    worker           = { group = aws_security_group.worker.id, to = "AWS APIs and dataset downloads" }
  }

  security_group_id = each.value.group
  description       = "HTTPS to ${each.value.to}"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

moved {
  from = aws_vpc_security_group_egress_rule.parameter_server_https
  to   = aws_vpc_security_group_egress_rule.https["parameter_server"]
}

moved {
  from = aws_vpc_security_group_egress_rule.worker_https
  to   = aws_vpc_security_group_egress_rule.https["worker"]
}

resource "aws_vpc_security_group_egress_rule" "worker_to_parameter_server" {
  security_group_id            = aws_security_group.worker.id
  description                  = "gRPC to the parameter server"
  ip_protocol                  = "tcp"
  from_port                    = var.server_port
  to_port                      = var.server_port
  referenced_security_group_id = aws_security_group.parameter_server.id
}

# --- Container images. Tags are immutable (deploy.sh tags with the git commit), so a task
# definition always names exactly one image and a new commit always rolls out.

resource "aws_ecr_repository" "parameter_server" {
  name                 = local.parameter_server_name
  image_tag_mutability = "IMMUTABLE"
  # Lets destroy remove the repository while it still holds images.
  force_delete = true

  image_scanning_configuration {
    scan_on_push = true
  }
}

resource "aws_ecr_repository" "worker" {
  name                 = local.worker_name
  image_tag_mutability = "IMMUTABLE"
  force_delete         = true

  image_scanning_configuration {
    scan_on_push = true
  }
}

locals {
  ecr_lifecycle_policy = jsonencode({
    rules = [
      {
        rulePriority = 1
        description  = "Drop untagged layers left by re-pushes after a day"
        selection = {
          tagStatus   = "untagged"
          countType   = "sinceImagePushed"
          countUnit   = "days"
          countNumber = 1
        }
        action = { type = "expire" }
      },
      {
        # A rule on "any" must have the highest priority number.
        rulePriority = 2
        description  = "Keep the last ${var.ecr_keep_images} images"
        selection = {
          tagStatus   = "any"
          countType   = "imageCountMoreThan"
          countNumber = var.ecr_keep_images
        }
        action = { type = "expire" }
      },
    ]
  })
}

resource "aws_ecr_lifecycle_policy" "parameter_server" {
  repository = aws_ecr_repository.parameter_server.name
  policy     = local.ecr_lifecycle_policy
}

resource "aws_ecr_lifecycle_policy" "worker" {
  repository = aws_ecr_repository.worker.name
  policy     = local.ecr_lifecycle_policy
}

# --- S3: datasets (datasets/), checkpoints (checkpoints/) and exported models (models/).
# A prefix rather than a fixed name, because bucket names are global across all AWS accounts.

resource "aws_s3_bucket" "data" {
  bucket_prefix = "${local.name}-data-"
  force_destroy = var.bucket_force_destroy
}

resource "aws_s3_bucket_public_access_block" "data" {
  bucket                  = aws_s3_bucket.data.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "data" {
  bucket = aws_s3_bucket.data.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_versioning" "data" {
  bucket = aws_s3_bucket.data.id

  versioning_configuration {
    status = "Enabled"
  }
}

# Versioning keeps every overwritten checkpoint; expire old versions so storage does not grow forever.
resource "aws_s3_bucket_lifecycle_configuration" "data" {
  bucket = aws_s3_bucket.data.id

  rule {
    id     = "expire-old-versions"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = 30
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.data]
}

# --- Logs and service discovery.

resource "aws_cloudwatch_log_group" "parameter_server" {
  name              = local.parameter_server_log_group
  retention_in_days = var.log_retention_days
}

resource "aws_cloudwatch_log_group" "worker" {
  name              = local.worker_log_group
  retention_in_days = var.log_retention_days
}

# Container Insights (enabled on the cluster, ecs.tf) writes its performance events here. Left to
# ECS, the group would be created on first use, kept forever and outlive `make destroy`; made here
# before the cluster, it has the run's retention and goes with the rest.
resource "aws_cloudwatch_log_group" "container_insights" {
  name              = "/aws/ecs/containerinsights/${local.cluster_name}/performance"
  retention_in_days = var.log_retention_days
}

resource "aws_service_discovery_private_dns_namespace" "main" {
  name        = local.namespace_name
  description = "Private DNS for ${local.name}: workers find the parameter server by name"
  vpc         = aws_vpc.main.id
}

# Each shard under its own name: parameter-server, parameter-server-1, ...
resource "aws_service_discovery_service" "parameter_server" {
  count = var.shard_count

  name = local.shard_dns_labels[count.index]
  # Destroy must not fail on instances ECS has not deregistered yet.
  force_destroy = true

  dns_config {
    namespace_id   = aws_service_discovery_private_dns_namespace.main.id
    routing_policy = "MULTIVALUE"

    dns_records {
      # Short TTL: a replaced server task gets a new IP, and workers must find it quickly.
      ttl  = 10
      type = "A"
    }
  }

  # ECS reports the container health check, so DNS only answers with a healthy server.
  health_check_custom_config {
    failure_threshold = 1
  }
}

# The shared secret every RPC carries (AUTH_TOKEN). Generated with the AWS provider's own random
# source (no extra provider to install) and stored as a SecureString; ignore_changes keeps the
# first value, since the data source draws a new password on every plan.
data "aws_secretsmanager_random_password" "auth_token" {
  count = local.generate_auth_token ? 1 : 0

  password_length     = 48
  exclude_punctuation = true
}

resource "aws_ssm_parameter" "auth_token" {
  count = local.generate_auth_token ? 1 : 0

  name        = "/${local.name}/auth-token"
  description = "Bearer token of the ${local.name} parameter server (AUTH_TOKEN)"
  type        = "SecureString"
  value       = data.aws_secretsmanager_random_password.auth_token[0].random_password

  lifecycle {
    ignore_changes = [value]
  }
}

locals {
  generate_auth_token = var.generate_auth_token && var.auth_token_ssm_parameter_arn == null
  auth_token_arn      = local.generate_auth_token ? aws_ssm_parameter.auth_token[0].arn : var.auth_token_ssm_parameter_arn
}
