# The mocked AWS provider both test files use (mock_provider "aws" { source = "./tests/aws" }):
# data sources get the defaults below, computed attributes (ids, ARNs, repository URLs) generated
# values.
mock_data "aws_availability_zones" {
  defaults = {
    names = ["us-west-2a", "us-west-2b", "us-west-2c", "us-west-2d"]
  }
}

mock_data "aws_secretsmanager_random_password" {
  defaults = {
    random_password = "mockedmockedmockedmockedmockedmockedmockedmocked"
  }
}

mock_data "aws_iam_role" {
  defaults = {
    arn = "arn:aws:iam::123456789012:role/LabRole"
  }
}

# Distinct, well-formed values where the provider validates ARNs or where a test must tell two
# resources apart (a shared generated value would let a wrong reference pass).
override_resource {
  target = aws_ecs_cluster.main
  values = { arn = "arn:aws:ecs:us-west-2:123456789012:cluster/distributed-ps-dev-cluster" }
}

override_resource {
  target = aws_service_discovery_service.parameter_server[0]
  values = { arn = "arn:aws:servicediscovery:us-west-2:123456789012:service/srv-parameterserver" }
}

override_resource {
  target = aws_service_discovery_service.parameter_server[1]
  values = { arn = "arn:aws:servicediscovery:us-west-2:123456789012:service/srv-parameterserver1" }
}

override_resource {
  target = aws_service_discovery_service.parameter_server[2]
  values = { arn = "arn:aws:servicediscovery:us-west-2:123456789012:service/srv-parameterserver2" }
}

override_resource {
  target = aws_ecr_repository.parameter_server
  values = {
    arn            = "arn:aws:ecr:us-west-2:123456789012:repository/distributed-ps-dev-parameter-server"
    repository_url = "123456789012.dkr.ecr.us-west-2.amazonaws.com/distributed-ps-dev-parameter-server"
  }
}

override_resource {
  target = aws_ecr_repository.worker
  values = {
    arn            = "arn:aws:ecr:us-west-2:123456789012:repository/distributed-ps-dev-worker"
    repository_url = "123456789012.dkr.ecr.us-west-2.amazonaws.com/distributed-ps-dev-worker"
  }
}

override_resource {
  target = aws_iam_role.execution
  values = { arn = "arn:aws:iam::123456789012:role/distributed-ps-dev-execution" }
}

override_resource {
  target = aws_iam_role.task["parameter_server"]
  values = { arn = "arn:aws:iam::123456789012:role/distributed-ps-dev-parameter-server-task" }
}

override_resource {
  target = aws_iam_role.task["worker"]
  values = { arn = "arn:aws:iam::123456789012:role/distributed-ps-dev-worker-task" }
}

override_resource {
  target = module.parameter_server.aws_ecs_service.this
  values = { id = "arn:aws:ecs:us-west-2:123456789012:service/distributed-ps-dev-cluster/distributed-ps-dev-parameter-server" }
}

override_resource {
  target = module.worker.aws_ecs_service.this
  values = { id = "arn:aws:ecs:us-west-2:123456789012:service/distributed-ps-dev-cluster/distributed-ps-dev-worker" }
}
