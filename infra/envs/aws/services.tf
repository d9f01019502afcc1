resource "aws_ecs_cluster" "main" {
  name = local.name
  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_cloudwatch_log_group" "app" {
  name              = "/ecs/${local.name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

# The level-3 admin token: generated here, read by the model services and the monitoring job.
resource "aws_secretsmanager_secret" "admin_token" {
  # checkov:skip=CKV2_AWS_57:Rotated by putting a new secret version and restarting the services (infra/README.md); a rotation Lambda is out of scope.
  name_prefix = "${local.name}-admin-token-"
  kms_key_id  = aws_kms_key.main.arn
}

# The token for POST /feedback (labels): a scope apart from the admin API, put by whoever runs
# the system that reports actual durations (infra/README.md).
resource "aws_secretsmanager_secret" "feedback_token" {
  # checkov:skip=CKV2_AWS_57:Rotated like the admin token (infra/README.md); a rotation Lambda is out of scope.
  name_prefix = "${local.name}-feedback-token-"
  kms_key_id  = aws_kms_key.main.arn
}

locals {
  common_env = {
    TAXI_MLOPS_ENV      = "prod"
    TAXI_MLOPS_HOME     = "/tmp/taxi-mlops"
    MLFLOW_TRACKING_URI = local.mlflow_url
  }
  service = {
    region             = var.region
    image              = local.image
    execution_role_arn = aws_iam_role.execution.arn
    log_group          = aws_cloudwatch_log_group.app.name
    cluster_arn        = aws_ecs_cluster.main.arn
    subnet_ids         = var.private_subnet_ids
    security_group_ids = [aws_security_group.services.id]
  }
}

# `taxi-mlops level2 server`: PostgreSQL from TAXI_MLOPS_DB_* (user and password straight from
# the RDS-managed secret's JSON keys: no password in Terraform state or task definitions),
# artifacts proxied to S3.
module "mlflow" {
  source               = "../../modules/ecs_service"
  name                 = "${local.name}-mlflow"
  region               = local.service.region
  image                = local.service.image
  execution_role_arn   = local.service.execution_role_arn
  task_role_arn        = aws_iam_role.mlflow.arn
  log_group            = local.service.log_group
  cluster_arn          = local.service.cluster_arn
  subnet_ids           = local.service.subnet_ids
  security_group_ids   = local.service.security_group_ids
  service_registry_arn = aws_service_discovery_service.mlflow.arn
  port                 = 5000
  desired_count        = 1
  cpu                  = 1024
  memory               = 2048
  command              = ["taxi-mlops", "level2", "server", "--host", "0.0.0.0", "--port", "5000", "--workers", "2"]
  environment = {
    TAXI_MLOPS_HOME                         = "/tmp/taxi-mlops"
    TAXI_MLOPS_DB_HOST                      = aws_db_instance.mlflow.address
    TAXI_MLOPS_DB_NAME                      = aws_db_instance.mlflow.db_name
    TAXI_MLOPS_MLFLOW_ARTIFACTS_DESTINATION = "s3://${aws_s3_bucket.artifacts.bucket}/mlflow"
    # the name the tasks call it by (local.mlflow_url): MLflow refuses other Host headers (403)
    TAXI_MLOPS_MLFLOW_ALLOWED_HOSTS = "mlflow.${aws_service_discovery_private_dns_namespace.internal.name}"
    MLFLOW_DISABLE_TELEMETRY        = "true"
  }
  secrets = {
    TAXI_MLOPS_DB_USER     = "${aws_db_instance.mlflow.master_user_secret[0].secret_arn}:username::"
    TAXI_MLOPS_DB_PASSWORD = "${aws_db_instance.mlflow.master_user_secret[0].secret_arn}:password::"
  }
}

# Blue and green: one ECS service each, pinned to one registry version (`level3 serve
# --pin-version`); the ALB listener splits the traffic between them by weight. A pinned service
# refuses the level-3 admin API's deployment changes: here they are Terraform variables.
module "model" {
  for_each           = { blue = var.blue_version, green = var.green_version }
  source             = "../../modules/ecs_service"
  name               = "${local.name}-${each.key}"
  region             = local.service.region
  image              = local.service.image
  execution_role_arn = local.service.execution_role_arn
  task_role_arn      = aws_iam_role.model.arn
  log_group          = local.service.log_group
  cluster_arn        = local.service.cluster_arn
  subnet_ids         = local.service.subnet_ids
  security_group_ids = local.service.security_group_ids
  target_group_arn   = aws_lb_target_group.model[each.key].arn
  port               = 8100
  desired_count      = each.value == 0 ? 0 : var.service_count
  environment        = local.common_env
  secrets = {
    TAXI_MLOPS_ADMIN_TOKEN    = aws_secretsmanager_secret.admin_token.arn
    TAXI_MLOPS_FEEDBACK_TOKEN = aws_secretsmanager_secret.feedback_token.arn
  }
  rollback_alarm_names = [aws_cloudwatch_metric_alarm.errors[each.key].alarm_name, aws_cloudwatch_metric_alarm.latency[each.key].alarm_name]
  command = [
    "taxi-mlops", "level3", "serve", "--host", "0.0.0.0", "--port", "8100", "--workers", "2",
    # green_version 0 runs no task; the task definition still needs a valid command
    "--pin-version", tostring(max(each.value, 1)), "--pin-variant", each.key,
  ]
}

# Level 4 as a scheduled task. Off by default: in this shape each model task keeps its
# prediction log on its own disk and the pinned services refuse the level-3 admin API, so a
# monitoring cycle would see no traffic and could not shift it. Both need the shared
# prediction log and a Terraform-driven canary (infra/README.md, "Not built yet").
module "monitoring" {
  source             = "../../modules/ecs_service"
  name               = "${local.name}-monitoring"
  region             = local.service.region
  image              = local.service.image
  execution_role_arn = local.service.execution_role_arn
  task_role_arn      = aws_iam_role.monitoring.arn
  log_group          = local.service.log_group
  run_service        = false
  command            = ["taxi-mlops", "level4", "monitor", "--window-hours", "1", "--url", local.level3_url]
  environment        = local.common_env
  secrets            = { TAXI_MLOPS_ADMIN_TOKEN = aws_secretsmanager_secret.admin_token.arn }
}

resource "aws_cloudwatch_event_rule" "monitoring" {
  name                = "${local.name}-monitoring"
  description         = "taxi-mlops level 4: one monitoring cycle"
  schedule_expression = var.monitoring_schedule
  is_enabled          = var.enable_monitoring
}

resource "aws_cloudwatch_event_target" "monitoring" {
  rule     = aws_cloudwatch_event_rule.monitoring.name
  arn      = aws_ecs_cluster.main.arn
  role_arn = aws_iam_role.events.arn
  ecs_target {
    task_definition_arn = module.monitoring.task_definition_arn
    launch_type         = "FARGATE"
    task_count          = 1
    network_configuration {
      subnets          = var.private_subnet_ids
      security_groups  = [aws_security_group.services.id]
      assign_public_ip = false
    }
  }
}

# ------------------------------------------------------------------------------- alarms

resource "aws_sns_topic" "alarms" {
  name              = "${local.name}-alarms"
  kms_master_key_id = aws_kms_key.main.id
}

resource "aws_cloudwatch_metric_alarm" "errors" {
  for_each            = aws_lb_target_group.model
  alarm_name          = "${local.name}-${each.key}-5xx"
  alarm_description   = "${each.key}: 5xx from the model service; rolls a deployment of it back"
  namespace           = "AWS/ApplicationELB"
  metric_name         = "HTTPCode_Target_5XX_Count"
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 3
  datapoints_to_alarm = 2
  threshold           = var.alarm_5xx_threshold
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  dimensions = {
    LoadBalancer = aws_lb.public.arn_suffix
    TargetGroup  = each.value.arn_suffix
  }
  alarm_actions = [aws_sns_topic.alarms.arn]
  ok_actions    = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "latency" {
  for_each            = aws_lb_target_group.model
  alarm_name          = "${local.name}-${each.key}-p99"
  alarm_description   = "${each.key}: p99 response time; rolls a deployment of it back"
  namespace           = "AWS/ApplicationELB"
  metric_name         = "TargetResponseTime"
  extended_statistic  = "p99"
  period              = 60
  evaluation_periods  = 5
  datapoints_to_alarm = 3
  threshold           = var.alarm_p99_latency_s
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  dimensions = {
    LoadBalancer = aws_lb.public.arn_suffix
    TargetGroup  = each.value.arn_suffix
  }
  alarm_actions = [aws_sns_topic.alarms.arn]
  ok_actions    = [aws_sns_topic.alarms.arn]
}
