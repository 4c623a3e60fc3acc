variable "names" {
  description = "One task family and ECS service per name."
  type        = list(string)

  validation {
    condition     = length(var.names) >= 1
    error_message = "At least one service name is needed."
  }
}

variable "container_definitions" {
  description = "The task definition's container definitions (JSON), one per name."
  type        = list(string)

  validation {
    condition     = length(var.container_definitions) == length(var.names)
    error_message = "There must be one container definition per service name."
  }
}

variable "registry_arns" {
  description = "Cloud Map service ARNs the services register their tasks in, one per name; empty for services nobody dials."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.registry_arns) == 0 || length(var.registry_arns) == length(var.names)
    error_message = "There must be one Cloud Map registry per service name, or none."
  }
}

variable "cpu" {
  description = "Fargate CPU units of each task (the root module checks that cpu and memory are a Fargate size)."
  type        = number
}

variable "memory" {
  description = "Fargate memory (MiB) of each task."
  type        = number
}

variable "task_role_arn" {
  description = "IAM role the containers run as."
  type        = string
}

variable "security_group_ids" {
  description = "Security groups of the tasks."
  type        = list(string)
}

variable "desired_count" {
  description = "Tasks each service runs."
  type        = number
}

variable "job" {
  description = "What every service of the job shares: its cluster, subnets, CPU architecture and the role ECS starts tasks with."
  type = object({
    cluster_id         = string
    subnet_ids         = list(string)
    cpu_architecture   = string
    execution_role_arn = string
  })
}
