output "url" {
  description = "The prediction endpoint: the certificate's name (domain_name), HTTPS. The load balancer's own name would fail the TLS hostname check."
  value       = local.level3_url
}

output "alb_dns_name" {
  description = "Point domain_name here (an alias or CNAME) when route53_zone_id is not set."
  value       = aws_lb.public.dns_name
}

output "split" {
  description = "How traffic is split: app (the level-3 service's own split, see `taxi-mlops level3 status`) or the alb listener weights."
  value       = local.app_split ? { mode = "app" } : { mode = "alb", blue = local.blue_weight, green = local.green_weight }
}

output "artifact_bucket" {
  description = "S3 bucket of MLflow artifacts."
  value       = aws_s3_bucket.artifacts.bucket
}

output "ecr_repository_url" {
  description = "Where image.yml pushes the image (immutable tags): the repository variable ECR_REPOSITORY_URL."
  value       = aws_ecr_repository.app.repository_url
}

output "github_ci_role_arn" {
  description = "Role image.yml and train.yml assume through OIDC: the repository variable AWS_CI_ROLE_ARN."
  value       = aws_iam_role.github_ci.arn
}

output "train_task" {
  description = "What train.yml's `make train-ecs` runs (the repository variable AWS_TRAIN_TASK): cluster, task family, container, network, log group."
  value = jsonencode({
    cluster         = aws_ecs_cluster.main.name
    taskDefinition  = module.train.family
    container       = module.train.container_name
    subnets         = var.private_subnet_ids
    securityGroups  = [aws_security_group.services.id]
    logGroup        = aws_cloudwatch_log_group.app.name
    logStreamPrefix = module.train.container_name
  })
}

output "token_secret_arns" {
  description = "Secrets Manager secrets of the admin and feedback tokens (generated): read the admin token into deploy.yml's TAXI_MLOPS_ADMIN_TOKEN secret."
  value       = { for name, secret in aws_secretsmanager_secret.token : name => secret.arn }
}

output "alarm_topic_arn" {
  description = "SNS topic of the 5xx and latency alarms (subscribe on-call here)."
  value       = aws_sns_topic.alarms.arn
}
