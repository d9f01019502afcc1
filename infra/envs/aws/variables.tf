variable "region" {
  description = "AWS region for every resource."
  type        = string
  default     = "eu-west-1"
}

variable "environment" {
  description = "Name of this deployment (prefixes every resource name)."
  type        = string
  default     = "prod"
}

variable "vpc_id" {
  description = "VPC to run in (bring your own network: this environment does not create one)."
  type        = string
}

variable "public_subnet_ids" {
  description = "Subnets (two or more AZs) for the load balancer."
  type        = list(string)
}

variable "private_subnet_ids" {
  description = "Subnets (two or more AZs) for ECS tasks and the database; they need a NAT or VPC endpoints for ECR, S3 and CloudWatch Logs."
  type        = list(string)
}

variable "certificate_arn" {
  description = "ACM certificate for the HTTPS listener."
  type        = string
}

variable "allowed_cidrs" {
  description = "Client networks allowed to reach the load balancer."
  type        = list(string)
}

variable "image_tag" {
  description = "Immutable tag of the taxi-mlops image in ECR (the git commit the image was built from)."
  type        = string
}

variable "blue_version" {
  description = "Registry version the blue service loads."
  type        = number
}

variable "green_version" {
  description = "Registry version the green service loads (0: green runs no tasks and must get no traffic)."
  type        = number
  default     = 0
}

variable "green_weight" {
  description = "Percent of requests the load balancer forwards to green (0-100): the A/B split."
  type        = number
  default     = 0
  validation {
    condition     = var.green_weight >= 0 && var.green_weight <= 100
    error_message = "The green_weight variable must be between 0 and 100."
  }
}

variable "service_count" {
  description = "Tasks per model service (blue and green)."
  type        = number
  default     = 2
}

variable "db_instance_class" {
  description = "RDS instance class of the MLflow backend store."
  type        = string
  default     = "db.t4g.small"
}

variable "enable_monitoring" {
  description = "Run the level-4 monitoring task on its schedule. Leave false until the prediction log is shared (infra/README.md)."
  type        = bool
  default     = false
}

variable "monitoring_schedule" {
  description = "EventBridge schedule expression of the level-4 monitoring task."
  type        = string
  default     = "cron(17 * * * ? *)"
}

variable "alarm_5xx_threshold" {
  description = "5xx responses from a target group per minute that raise its alarm."
  type        = number
  default     = 5
}

variable "alarm_p99_latency_s" {
  description = "p99 target response time (seconds) that raises the latency alarm."
  type        = number
  default     = 0.5
}

variable "github_repository" {
  description = "owner/name of the GitHub repository whose workflows may assume the deploy role."
  type        = string
}

variable "log_retention_days" {
  description = "CloudWatch Logs retention."
  type        = number
  default     = 365
}
