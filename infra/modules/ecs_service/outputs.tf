output "task_definition_arn" {
  description = "The task definition (with revision)."
  value       = aws_ecs_task_definition.this.arn
}

output "service_name" {
  description = "The ECS service name (empty for a job)."
  value       = var.run_service ? aws_ecs_service.this[0].name : ""
}

output "family" {
  description = "The task definition family (RunTask by family runs its latest revision)."
  value       = aws_ecs_task_definition.this.family
}

output "container_name" {
  description = "The container's name (for RunTask overrides)."
  value       = var.name
}
