# One ECS Fargate service running the taxi-mlops image: used for the MLflow server and the
# level-3 service, and (as a task definition only) the training and level-4 monitoring tasks.
#
# The container runs as a non-root user on a read-only root filesystem. What it may write are
# two task-scoped volumes: TAXI_MLOPS_HOME (/var/lib/taxi-mlops) and /tmp (also HOME, for tools
# that write there). A Fargate bind mount is root-owned unless the image declares the same path
# as a VOLUME: the Dockerfile creates both, owned by the task's user, so ECS copies them with
# their owner (tests/unit/test_infra_aws.py checks the two stay in step).

locals {
  home = "/var/lib/taxi-mlops"
  writable = {
    home = local.home
    tmp  = "/tmp"
  }
}

terraform {
  required_version = ">= 1.0.3"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40, < 6.0"
    }
  }
}

resource "aws_ecs_task_definition" "this" {
  family                   = var.name
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.cpu
  memory                   = var.memory
  execution_role_arn       = var.platform.execution_role_arn
  task_role_arn            = var.task_role_arn

  container_definitions = jsonencode([
    {
      name                   = var.name
      image                  = var.platform.image
      command                = var.command
      essential              = true
      readonlyRootFilesystem = true
      user                   = "10001"
      portMappings           = var.port == 0 ? [] : [{ containerPort = var.port, protocol = "tcp" }]
      environment = [
        for k, v in merge({ TAXI_MLOPS_HOME = local.home, HOME = "/tmp" }, var.environment) :
        { name = k, value = v }
      ]
      secrets     = [for k, v in var.secrets : { name = k, valueFrom = v }]
      mountPoints = [for name, path in local.writable : { sourceVolume = name, containerPath = path, readOnly = false }]
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = var.platform.log_group
          awslogs-region        = var.platform.region
          awslogs-stream-prefix = var.name
        }
      }
    }
  ])

  dynamic "volume" {
    for_each = local.writable
    content {
      name = volume.key
    }
  }
}

resource "aws_ecs_service" "this" {
  count                  = var.run_service ? 1 : 0
  name                   = var.name
  cluster                = var.platform.cluster_arn
  task_definition        = aws_ecs_task_definition.this.arn
  desired_count          = var.desired_count
  launch_type            = "FARGATE"
  enable_execute_command = false
  propagate_tags         = "SERVICE"

  network_configuration {
    subnets          = var.platform.subnet_ids
    security_groups  = var.platform.security_group_ids
    assign_public_ip = false
  }

  # a level-3 task loads its models from the registry before its first health check passes
  health_check_grace_period_seconds = var.target_group_arn == "" ? null : 120

  dynamic "load_balancer" {
    for_each = var.target_group_arn == "" ? [] : [var.target_group_arn]
    content {
      target_group_arn = load_balancer.value
      container_name   = var.name
      container_port   = var.port
    }
  }

  dynamic "service_registries" {
    for_each = var.service_registry_arn == "" ? [] : [var.service_registry_arn]
    content {
      registry_arn = service_registries.value
    }
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  # A new task definition whose alarms fire during the deployment is rolled back by ECS.
  dynamic "alarms" {
    for_each = length(var.rollback_alarm_names) == 0 ? [] : [var.rollback_alarm_names]
    content {
      alarm_names = alarms.value
      enable      = true
      rollback    = true
    }
  }
}
