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
  description = "ACM certificate for the HTTPS listener (it must cover domain_name)."
  type        = string
}

variable "domain_name" {
  description = "The name clients call the service by (in certificate_arn): the url output, and the Route 53 alias when route53_zone_id is set."
  type        = string
}

variable "route53_zone_id" {
  description = "Hosted zone in which to create domain_name as an alias of the load balancer (empty: point your DNS at the alb_dns_name output yourself)."
  type        = string
  default     = ""
}

variable "allowed_cidrs" {
  description = "Client networks allowed to reach the load balancer."
  type        = list(string)
}

variable "admin_cidrs" {
  description = "Networks allowed to call the level-3 admin API (/admin/*) through the load balancer, e.g. your deploy runners; empty: the same as allowed_cidrs. Level 4 calls it inside the VPC, not through here."
  type        = list(string)
  default     = []
}

variable "image_tag" {
  description = "Immutable tag of the taxi-mlops image in ECR (the git commit image.yml built it from). Empty: no task runs anywhere (the first apply, before an image is pushed)."
  type        = string
  default     = ""
}

variable "serve" {
  description = "Run the level-3 service. Leave false until the registry has a champion (train.yml's first run on the training task): a level-3 task cannot start without one."
  type        = bool
  default     = true
}

variable "split_mode" {
  description = "How traffic is split between blue and green. app: one level-3 service of service_count tasks sharing the state database; the app's own ride-id split, admin API and prediction log, as on one machine. alb: two services pinned to blue_version and green_version, split by listener weights (green_weight); level 4 cannot act there (infra/README.md)."
  type        = string
  default     = "app"
  validation {
    condition     = contains(["app", "alb"], var.split_mode)
    error_message = "The split_mode variable must be app or alb."
  }
}

variable "blue_version" {
  description = "split_mode = alb only: the registry version the blue service loads."
  type        = number
  default     = 1
}

variable "green_version" {
  description = "split_mode = alb only: the registry version the green service loads (0: green runs no tasks and must get no traffic)."
  type        = number
  default     = 0
}

variable "green_weight" {
  description = "split_mode = alb only: percent of requests the load balancer forwards to green (0-100)."
  type        = number
  default     = 0
  validation {
    condition     = var.green_weight >= 0 && var.green_weight <= 100
    error_message = "The green_weight variable must be between 0 and 100."
  }
}

variable "alb_stickiness_seconds" {
  description = "split_mode = alb only: keep a client on one target group this long (0: off). While it is on, a target group whose weight went to 0 still gets its stuck clients: keep its tasks running that long before its version goes to 0 (infra/README.md)."
  type        = number
  default     = 0
  validation {
    condition     = var.alb_stickiness_seconds >= 0 && var.alb_stickiness_seconds <= 604800
    error_message = "The alb_stickiness_seconds variable must be between 0 (off) and 604800."
  }
}

variable "service_count" {
  description = "Level-3 tasks (split_mode = app), or tasks per model service (alb)."
  type        = number
  default     = 2
}

variable "db_instance_class" {
  description = "RDS instance class of the MLflow backend store."
  type        = string
  default     = "db.t4g.small"
}

variable "enable_monitoring" {
  description = "Run the level-4 monitoring task on its schedule (split_mode = app, once the service runs)."
  type        = bool
  default     = true
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
  description = "owner/name of the GitHub repository whose workflows on main may assume the CI role (push images, run the training task)."
  type        = string
}

variable "create_github_oidc_provider" {
  description = "Create the account's GitHub Actions OIDC provider. false (default): use the one the account already has (an account has at most one per URL; terraform.yml's plan role already needs it)."
  type        = bool
  default     = false
}

variable "train_args" {
  description = "Default arguments of the training task's `taxi-mlops level2 train` (train.yml overrides them per run)."
  type        = list(string)
  default     = ["--generated", "--train-months", "2019-01", "--val-month", "2019-02", "--rows", "20000", "--trials", "3"]
}

variable "log_retention_days" {
  description = "CloudWatch Logs retention."
  type        = number
  default     = 365
}
