variable "name" {
  description = "Process name (PID file and log are RUN_DIR/NAME.pid and NAME.log)."
  type        = string
}

variable "run_dir" {
  description = "Folder of PID files and logs."
  type        = string
}

variable "command" {
  description = "The command line (a shell word list: quote arguments with spaces)."
  type        = string
}

variable "health_url" {
  description = "URL that answers 2xx once the process is ready (empty: no check)."
  type        = string
  default     = ""
}

variable "environment" {
  description = "Environment variables of the process."
  type        = map(string)
  default     = {}
}
