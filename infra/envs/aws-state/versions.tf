terraform {
  required_version = ">= 1.0.3"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40, < 6.0"
    }
  }
  # This configuration creates the remote state store, so its own state starts local: keep
  # terraform.tfstate safe, or move it into the bucket afterwards (infra/README.md).
}

provider "aws" {
  region = var.region
  default_tags {
    tags = {
      project    = "taxi-mlops"
      managed_by = "terraform"
      purpose    = "terraform-state"
    }
  }
}

data "aws_caller_identity" "current" {}
