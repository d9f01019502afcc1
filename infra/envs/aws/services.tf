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

# The level-3 tokens: the admin token (deploy, split, promote, rollback; level 4 and deploy.yml
# use it) and the feedback token (POST /feedback: whoever reports actual durations). Generated
# here, so a task can start on the first apply: a secret with no value stops ECS from starting
# it at all. The values are in Terraform's state (encrypted S3, infra/envs/aws-state); a value
# put later by hand (rotation) is kept: Terraform ignores changes to it.
resource "random_password" "token" {
  for_each = toset(["admin", "feedback"])
  length   = 48
  special  = false
}

resource "aws_secretsmanager_secret" "token" {
  # checkov:skip=CKV2_AWS_57:Rotated by putting a new secret version and restarting the services (infra/README.md); a rotation Lambda is out of scope.
  for_each    = random_password.token
  name_prefix = "${local.name}-${each.key}-token-"
  kms_key_id  = aws_kms_key.main.arn
}

resource "aws_secretsmanager_secret_version" "token" {
  for_each      = random_password.token
  secret_id     = aws_secretsmanager_secret.token[each.key].id
  secret_string = each.value.result
  lifecycle {
    ignore_changes = [secret_string]
  }
}

locals {
  rds_secret = aws_db_instance.mlflow.master_user_secret[0].secret_arn
  service = {
    region             = var.region
    image              = local.image
    execution_role_arn = aws_iam_role.execution.arn
    log_group          = aws_cloudwatch_log_group.app.name
    cluster_arn        = aws_ecs_cluster.main.arn
    subnet_ids         = var.private_subnet_ids
    security_group_ids = [aws_security_group.services.id]
  }
  common_env = {
    TAXI_MLOPS_ENV      = "prod"
    MLFLOW_TRACKING_URI = local.mlflow_url
  }
  # everything that reads or writes operational state: the level-3 replicas and level 4
  state_env = merge(local.common_env, { TAXI_MLOPS_STATE_DB_URL = local.state_db_url })
  state_secrets = {
    TAXI_MLOPS_STATE_DB_USER     = "${local.rds_secret}:username::"
    TAXI_MLOPS_STATE_DB_PASSWORD = "${local.rds_secret}:password::"
  }
  token_secrets = {
    TAXI_MLOPS_ADMIN_TOKEN    = aws_secretsmanager_secret.token["admin"].arn
    TAXI_MLOPS_FEEDBACK_TOKEN = aws_secretsmanager_secret.token["feedback"].arn
  }
  serve_command = ["level3", "serve", "--host", "0.0.0.0", "--port", tostring(local.level3_port), "--workers", "2"]
}

# `taxi-mlops level2 server`: PostgreSQL from TAXI_MLOPS_DB_* (user and password straight from
# the RDS-managed secret's JSON keys: no password in Terraform state or task definitions),
# artifacts proxied to S3.
module "mlflow" {
  source               = "../../modules/ecs_service"
  name                 = "${local.name}-mlflow"
  platform             = local.service
  task_role_arn        = aws_iam_role.mlflow.arn
  service_registry_arn = aws_service_discovery_service.internal["mlflow"].arn
  port                 = 5000
  desired_count        = local.running ? 1 : 0
  cpu                  = 1024
  memory               = 2048
  command              = ["level2", "server", "--host", "0.0.0.0", "--port", "5000", "--workers", "2"]
  environment = {
    TAXI_MLOPS_DB_HOST                      = aws_db_instance.mlflow.address
    TAXI_MLOPS_DB_NAME                      = aws_db_instance.mlflow.db_name
    TAXI_MLOPS_MLFLOW_ARTIFACTS_DESTINATION = "s3://${aws_s3_bucket.artifacts.bucket}/mlflow"
    # the name the tasks call it by (local.mlflow_url): MLflow refuses other Host headers (403)
    TAXI_MLOPS_MLFLOW_ALLOWED_HOSTS = "mlflow.${local.internal}"
    MLFLOW_DISABLE_TELEMETRY        = "true"
  }
  secrets = {
    TAXI_MLOPS_DB_USER     = "${local.rds_secret}:username::"
    TAXI_MLOPS_DB_PASSWORD = "${local.rds_secret}:password::"
  }
}

# split_mode = app (the default): one level-3 service of service_count replicas, unpinned, as
# `taxi-mlops stack` runs them: they share the deployment state and the prediction log in the
# state database, so the app's own sticky ride-id split, the admin API (deploy.yml, level 4)
# and the A/B report work across every task. Registered as level3.<namespace> for level 4.
module "level3" {
  count                = local.app_split ? 1 : 0
  source               = "../../modules/ecs_service"
  name                 = "${local.name}-level3"
  platform             = local.service
  task_role_arn        = aws_iam_role.model.arn
  target_group_arn     = aws_lb_target_group.model["level3"].arn
  service_registry_arn = aws_service_discovery_service.internal["level3"].arn
  port                 = local.level3_port
  desired_count        = local.running && var.serve ? var.service_count : 0
  cpu                  = 1024
  memory               = 2048
  environment          = local.state_env
  secrets              = merge(local.token_secrets, local.state_secrets)
  rollback_alarm_names = [aws_cloudwatch_metric_alarm.errors["level3"].alarm_name, aws_cloudwatch_metric_alarm.latency["level3"].alarm_name]
  command              = local.serve_command
}

# split_mode = alb: blue and green, one ECS service each, pinned to one registry version
# (`level3 serve --pin-version`); the listener splits by weight. A pinned service refuses the
# admin API's deployment changes (409): here they are Terraform variables. The prediction log
# is still shared (the state database), but level 4 cannot deploy or promote: it is off.
module "model" {
  for_each             = local.app_split ? {} : { blue = var.blue_version, green = var.green_version }
  source               = "../../modules/ecs_service"
  name                 = "${local.name}-${each.key}"
  platform             = local.service
  task_role_arn        = aws_iam_role.model.arn
  target_group_arn     = aws_lb_target_group.model[each.key].arn
  port                 = local.level3_port
  desired_count        = each.value == 0 || !local.running || !var.serve ? 0 : var.service_count
  cpu                  = 1024
  memory               = 2048
  environment          = local.state_env
  secrets              = merge(local.token_secrets, local.state_secrets)
  rollback_alarm_names = [aws_cloudwatch_metric_alarm.errors[each.key].alarm_name, aws_cloudwatch_metric_alarm.latency[each.key].alarm_name]
  # green_version 0 runs no task; the task definition still needs a valid command
  command = concat(local.serve_command, ["--pin-version", tostring(max(each.value, 1)), "--pin-variant", each.key])
}

# Level 2 in the cloud: the training flow as a task that train.yml starts (`make train-ecs`:
# ECS RunTask with the run's arguments, then waits for its exit code). It registers into the
# private MLflow, which stores the artifacts in S3; the first run makes the first champion.
module "train" {
  source        = "../../modules/ecs_service"
  name          = "${local.name}-train"
  platform      = local.service
  task_role_arn = aws_iam_role.train.arn
  run_service   = false
  cpu           = 2048
  memory        = 8192
  command       = concat(["level2", "train"], var.train_args)
  environment   = local.common_env
}

# Level 4 as a scheduled task (on by default): it reads the shared prediction log and the loop's
# state in the state database, retrains in-process (the level-2 flow, registering into MLflow)
# and calls the level-3 admin API at the replicas' internal address.
module "monitoring" {
  source        = "../../modules/ecs_service"
  name          = "${local.name}-monitoring"
  platform      = local.service
  task_role_arn = aws_iam_role.monitoring.arn
  run_service   = false
  cpu           = 2048
  memory        = 8192
  command       = ["level4", "monitor", "--window-hours", "1", "--url", local.level3_internal_url]
  environment   = local.state_env
  secrets       = merge({ TAXI_MLOPS_ADMIN_TOKEN = aws_secretsmanager_secret.token["admin"].arn }, local.state_secrets)
}

resource "aws_cloudwatch_event_rule" "monitoring" {
  name                = "${local.name}-monitoring"
  description         = "taxi-mlops level 4: one monitoring cycle"
  schedule_expression = var.monitoring_schedule
  is_enabled          = local.monitoring_enabled
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
