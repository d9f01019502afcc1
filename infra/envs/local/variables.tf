variable "home" {
  description = "TAXI_MLOPS_HOME for every service (absolute path): registry, logs, prediction log, PID files."
  type        = string
  validation {
    condition     = substr(var.home, 0, 1) == "/"
    error_message = "The home variable must be an absolute path."
  }
}

variable "bin_dir" {
  description = "Folder holding the taxi-mlops and mlflow executables (the project's virtualenv bin)."
  type        = string
}

variable "mlflow_port" {
  description = "Port of the MLflow tracking server on 127.0.0.1."
  type        = number
  default     = 5000
}

variable "level3_port" {
  description = "Port of the level-3 A/B service on 127.0.0.1."
  type        = number
  default     = 8100
}

variable "level3_workers" {
  description = "gunicorn workers of the level-3 service."
  type        = number
  default     = 2
}

variable "green_version" {
  description = "Registry version to run as green (0: none). Blue is always the registry's champion."
  type        = number
  default     = 0
}

variable "green_share" {
  description = "Percent of rides (sticky by ride id) answered by green, 0-100."
  type        = number
  default     = 0
  validation {
    condition     = var.green_share >= 0 && var.green_share <= 100
    error_message = "The green_share variable must be between 0 and 100."
  }
}

variable "bootstrap_train_args" {
  description = "Arguments of `taxi-mlops level2 train` when the registry has no champion yet."
  type        = string
  default     = "--generated --train-months 2019-01 --val-month 2019-02 --rows 20000 --models hgb --trials 2"
}

variable "monitoring_enabled" {
  description = "Run the level-4 monitoring schedule."
  type        = bool
  default     = true
}

variable "monitoring_cron" {
  description = "Cron (UTC) of the level-4 monitoring flow."
  type        = string
  default     = "0 * * * *"
}

variable "monitoring_window_hours" {
  description = "Hours of traffic each monitoring run looks at (match the cron)."
  type        = number
  default     = 1
}
