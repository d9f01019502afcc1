variable "platform" {
  description = "What every task of the system shares: region (for logs), image (with an immutable tag), the execution role (pulls the image, reads the secrets, writes logs), log group, cluster, private subnets and security groups."
  type = object({
    region             = string
    image              = string
    execution_role_arn = string
    log_group          = string
    cluster_arn        = string
    subnet_ids         = list(string)
    security_group_ids = list(string)
  })
}

variable "name" {
  description = "Service and task family name."
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

variable "task_role_arn" {
  description = "Role the container runs as."
  type        = string
}

variable "run_service" {
  description = "Create an ECS service (false: task definition only, for scheduled jobs)."
  type        = bool
  default     = true
}

variable "desired_count" {
  description = "Tasks to run."
  type        = number
  default     = 1
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
