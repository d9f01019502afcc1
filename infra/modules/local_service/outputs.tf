output "id" {
  description = "Changes whenever the process is replaced."
  value       = null_resource.this.id
}
