locals {
  # Fargate on-demand prices, us-west-2, Linux, USD per hour (vCPU-hour, GB-hour of memory).
  # Other regions differ by a few percent; logs, Container Insights, storage and data transfer
  # are not included.
  fargate_price = {
    X86_64 = { vcpu = 0.04048, gb = 0.004445 }
    ARM64  = { vcpu = 0.03238, gb = 0.00356 }
  }
  price = local.fargate_price[var.cpu_architecture]
  # Every task has a public IPv4 address (no NAT gateway), billed per hour.
  public_ipv4_per_hour = 0.005

  parameter_server_task_cost = var.parameter_server_cpu / 1024 * local.price.vcpu + var.parameter_server_memory / 1024 * local.price.gb + local.public_ipv4_per_hour
  worker_task_cost           = var.worker_cpu / 1024 * local.price.vcpu + var.worker_memory / 1024 * local.price.gb + local.public_ipv4_per_hour
  cost_per_hour              = var.shard_count * local.parameter_server_desired * local.parameter_server_task_cost + local.worker_desired * local.worker_task_cost
}

output "region" {
  description = "AWS region everything was created in."
  value       = var.region
}

output "parameter_server_ecr_repository_url" {
  description = "ECR repository URL of the parameter server image (push <url>:<tag>)."
  value       = aws_ecr_repository.parameter_server.repository_url
}

output "worker_ecr_repository_url" {
  description = "ECR repository URL of the worker image (push <url>:<tag>)."
  value       = aws_ecr_repository.worker.repository_url
}

output "image_tag" {
  description = "Image tag the task definitions run."
  value       = var.image_tag
}

output "cluster_name" {
  description = "ECS cluster name (aws ecs list-tasks --cluster <name>)."
  value       = aws_ecs_cluster.main.name
}

output "parameter_server_service_name" {
  description = "ECS service running the parameter server."
  value       = module.parameter_server.services[0].name
}

output "parameter_server_shards" {
  description = "Every server shard in index order: its ECS service and the host:port the workers reach it at (shard 0 is the parameter_server_* outputs)."
  value = [for k in range(var.shard_count) : {
    service = local.shard_service_names[k]
    address = local.shard_addresses[k]
  }]
}

output "worker_service_name" {
  description = "ECS service running the workers."
  value       = module.worker.services[0].name
}

output "parameter_server_log_group" {
  description = "CloudWatch log group of the parameter server (aws logs tail <name> --follow)."
  value       = aws_cloudwatch_log_group.parameter_server.name
}

output "worker_log_group" {
  description = "CloudWatch log group of the workers."
  value       = aws_cloudwatch_log_group.worker.name
}

output "parameter_server_dns_name" {
  description = "Private DNS name of the parameter server inside the VPC (Cloud Map)."
  value       = "${aws_service_discovery_service.parameter_server[0].name}.${aws_service_discovery_private_dns_namespace.main.name}"
}

output "parameter_server_address" {
  description = "host:port the workers connect to (their PARAMETER_SERVER_ADDRESS)."
  value       = local.parameter_server_address
}

output "security_group_parameter_server_id" {
  description = "Security group of the parameter server (accepts server_port from the workers' group only)."
  value       = aws_security_group.parameter_server.id
}

output "security_group_worker_id" {
  description = "Security group of the workers (no inbound)."
  value       = aws_security_group.worker.id
}

output "s3_bucket_name" {
  description = "S3 bucket for datasets, checkpoints and exported models (S3_BUCKET in the tasks)."
  value       = aws_s3_bucket.data.id
}

output "running_tasks" {
  description = "Number of tasks the services run while training (server shards + workers; 0 when running = false)."
  value       = var.shard_count * local.parameter_server_desired + local.worker_desired
}

output "estimated_cost_per_hour_usd" {
  description = "Estimated Fargate cost per hour of the running tasks, at us-west-2 on-demand prices for the chosen architecture: vCPU, memory and the public IPv4 address of each task."
  value       = floor(local.cost_per_hour * 10000 + 0.5) / 10000
}

output "monitoring_commands" {
  description = "Commands to follow the training run."
  value       = <<-EOT
    aws logs tail ${aws_cloudwatch_log_group.parameter_server.name} --follow --region ${var.region}
    aws logs tail ${aws_cloudwatch_log_group.worker.name} --follow --region ${var.region}
    aws ecs list-tasks --cluster ${aws_ecs_cluster.main.name} --region ${var.region}
    aws ecs describe-services --cluster ${aws_ecs_cluster.main.name} --services ${join(" ", local.shard_service_names)} ${module.worker.services[0].name} --region ${var.region}
  EOT
}
