output "url" {
  description = "The prediction endpoint (ALB, HTTPS)."
  value       = local.level3_url
}

output "weights" {
  description = "Listener weights: the A/B split."
  value       = { blue = local.blue_weight, green = local.green_weight }
}

output "artifact_bucket" {
  description = "S3 bucket of MLflow artifacts."
  value       = aws_s3_bucket.artifacts.bucket
}

output "ecr_repository_url" {
  description = "Where CI pushes the image (immutable tags)."
  value       = aws_ecr_repository.app.repository_url
}

output "github_deploy_role_arn" {
  description = "Role the deploy workflow assumes through OIDC."
  value       = aws_iam_role.github_deploy.arn
}

output "alarm_topic_arn" {
  description = "SNS topic of the 5xx and latency alarms (subscribe on-call here)."
  value       = aws_sns_topic.alarms.arn
}
