variable "name" {
  description = "Service and task family name."
  type        = string
}

variable "region" {
  description = "Region (for the log configuration)."
  type        = string
}

variable "image" {
  description = "Image URI with an immutable tag."
  type        = string
}

variable "command" {
  description = "Container command: the arguments of the image's entrypoint (taxi-mlops), e.g. [\"level3\", \"serve\"]."
  type        = list(string)
}

variable "port" {
  description = "Container port (0: none, for jobs)."
  type        = number
  default     = 0
}

variable "cpu" {
  description = "Fargate CPU units."
  type        = number
  default     = 512
}

variable "memory" {
  description = "Fargate memory (MiB)."
  type        = number
  default     = 1024
}

variable "environment" {
  description = "Plain environment variables."
  type        = map(string)
  default     = {}
}

variable "secrets" {
  description = "Environment variables read from Secrets Manager or SSM (name -> ARN)."
  type        = map(string)
  default     = {}
}

variable "execution_role_arn" {
  description = "Role ECS uses to pull the image, read the secrets and write logs."
  type        = string
}

variable "task_role_arn" {
  description = "Role the container runs as."
  type        = string
}

variable "log_group" {
  description = "CloudWatch log group."
  type        = string
}

variable "run_service" {
  description = "Create an ECS service (false: task definition only, for scheduled jobs)."
  type        = bool
  default     = true
}

variable "cluster_arn" {
  description = "ECS cluster."
  type        = string
  default     = ""
}

variable "desired_count" {
  description = "Tasks to run."
  type        = number
  default     = 1
}

variable "subnet_ids" {
  description = "Private subnets."
  type        = list(string)
  default     = []
}

variable "security_group_ids" {
  description = "Security groups of the tasks."
  type        = list(string)
  default     = []
}

variable "target_group_arn" {
  description = "Load balancer target group (empty: none)."
  type        = string
  default     = ""
}

variable "service_registry_arn" {
  description = "Cloud Map service for private DNS (empty: none)."
  type        = string
  default     = ""
}

variable "rollback_alarm_names" {
  description = "CloudWatch alarms that roll a deployment of this service back."
  type        = list(string)
  default     = []
}
