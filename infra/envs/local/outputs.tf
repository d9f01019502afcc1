output "mlflow_url" {
  description = "MLflow tracking server and UI."
  value       = local.mlflow_url
}

output "level3_url" {
  description = "The level-3 A/B service: POST /predict, POST /feedback, GET /health."
  value       = local.level3_url
}

output "split" {
  description = "Green version and its share of traffic."
  value       = { green_version = var.green_version, green_share = var.green_share }
}

output "run_dir" {
  description = "PID files and service logs."
  value       = local.run_dir
}
