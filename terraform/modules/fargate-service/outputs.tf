output "task_definitions" {
  description = "The task definitions, in the order of names."
  value       = aws_ecs_task_definition.this
}

output "services" {
  description = "The ECS services, in the order of names."
  value       = aws_ecs_service.this
}
