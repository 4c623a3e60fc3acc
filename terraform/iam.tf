# IAM. AWS Academy accounts cannot create roles, so by default every role is the existing LabRole.
# With create_iam_roles = true this file creates three least-privilege roles instead:
#   execution        - what ECS itself needs to start a task: pull the images, write the logs,
#                      read the optional AUTH_TOKEN parameter;
#   parameter server - read/write the bucket (checkpoints, models), scale this job's services;
#   worker           - read the bucket (datasets), scale this job's services.

data "aws_iam_role" "lab" {
  count = var.create_iam_roles ? 0 : 1

  name = var.lab_role_name
}

locals {
  execution_role_arn = var.create_iam_roles ? aws_iam_role.execution[0].arn : data.aws_iam_role.lab[0].arn
  task_role_arns     = { for task in keys(local.task_roles) : task => var.create_iam_roles ? aws_iam_role.task[task].arn : data.aws_iam_role.lab[0].arn }

  ecs_tasks_assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "ecs-tasks.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })

  # The finished job sets the desired count of its own services (workers and server shards) to 0
  # (see ecs.tf). The services' ARNs are spelled from the cluster's rather than read from the
  # services, so that the policies exist before the services start their first tasks (the services
  # depend on them) instead of after.
  service_arn_prefix = "${replace(aws_ecs_cluster.main.arn, ":cluster/", ":service/")}/"
  scale_down_statement = {
    Sid      = "ScaleDownFinishedJob"
    Effect   = "Allow"
    Action   = ["ecs:UpdateService", "ecs:DescribeServices"]
    Resource = [for name in concat(local.shard_service_names, [local.worker_name]) : "${local.service_arn_prefix}${name}"]
  }
}

resource "aws_iam_role" "execution" {
  count = var.create_iam_roles ? 1 : 0

  name               = "${local.name}-execution"
  assume_role_policy = local.ecs_tasks_assume_role_policy
}

resource "aws_iam_role_policy" "execution" {
  count = var.create_iam_roles ? 1 : 0

  name = "pull-images-write-logs"
  role = aws_iam_role.execution[0].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = concat([
      {
        Sid      = "EcrLogin"
        Effect   = "Allow"
        Action   = ["ecr:GetAuthorizationToken"]
        Resource = ["*"] # this action has no resource-level permissions
      },
      {
        Sid      = "PullImages"
        Effect   = "Allow"
        Action   = ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"]
        Resource = [aws_ecr_repository.parameter_server.arn, aws_ecr_repository.worker.arn]
      },
      {
        Sid      = "WriteLogs"
        Effect   = "Allow"
        Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
        Resource = ["${aws_cloudwatch_log_group.parameter_server.arn}:*", "${aws_cloudwatch_log_group.worker.arn}:*"]
      },
      ], local.auth_token_arn == null ? [] : [
      {
        Sid      = "ReadAuthToken"
        Effect   = "Allow"
        Action   = ["ssm:GetParameters"]
        Resource = [local.auth_token_arn]
      },
    ])
  })
}

# The two task roles differ only in what they may do with the bucket's objects: both list the bucket
# and may scale the finished job down.
locals {
  task_roles = {
    parameter_server = {
      name    = "${local.name}-parameter-server-task"
      policy  = "bucket-read-write-scale-down"
      sid     = "ReadWriteObjects"
      actions = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    }
    worker = {
      name    = "${local.name}-worker-task"
      policy  = "bucket-read-scale-down"
      sid     = "ReadObjects"
      actions = ["s3:GetObject"]
    }
  }
}

resource "aws_iam_role" "task" {
  for_each = var.create_iam_roles ? local.task_roles : {}

  name               = each.value.name
  assume_role_policy = local.ecs_tasks_assume_role_policy
}

resource "aws_iam_role_policy" "task" {
  for_each = var.create_iam_roles ? local.task_roles : {}

  name = each.value.policy
  role = aws_iam_role.task[each.key].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "ListBucket"
        Effect   = "Allow"
        Action   = ["s3:ListBucket"]
        Resource = [aws_s3_bucket.data.arn]
      },
      {
        Sid      = each.value.sid
        Effect   = "Allow"
        Action   = each.value.actions
        Resource = ["${aws_s3_bucket.data.arn}/*"]
      },
      local.scale_down_statement,
    ]
  })
}

# Each task role and its policy were resources of their own before: moved, a deployment made then
# keeps them (recreated, the new roles would clash with the old ones' names).
moved {
  from = aws_iam_role.parameter_server_task[0]
  to   = aws_iam_role.task["parameter_server"]
}

moved {
  from = aws_iam_role.worker_task[0]
  to   = aws_iam_role.task["worker"]
}

moved {
  from = aws_iam_role_policy.parameter_server_task[0]
  to   = aws_iam_role_policy.task["parameter_server"]
}

moved {
  from = aws_iam_role_policy.worker_task[0]
  to   = aws_iam_role_policy.task["worker"]
}
