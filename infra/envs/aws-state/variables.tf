variable "region" {
  description = "Region of the state bucket and lock table (any; the state is small)."
  type        = string
  default     = "eu-west-1"
}

variable "name" {
  description = "Prefix of the bucket and table names; the account id is appended to the bucket's, which must be globally unique."
  type        = string
  default     = "taxi-mlops-tfstate"
}

variable "noncurrent_version_days" {
  description = "Days an overwritten state version is kept (each apply writes one)."
  type        = number
  default     = 90
}
