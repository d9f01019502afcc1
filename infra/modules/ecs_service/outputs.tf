output "task_definition_arn" {
  description = "The task definition (with revision)."
  value       = aws_ecs_task_definition.this.arn
}

output "service_name" {
  description = "The ECS service name (empty for a job)."
  value       = var.run_service ? aws_ecs_service.this[0].name : ""
}
