# One long-running process on this machine, owned by Terraform: started (and health-checked)
# on create, stopped (its whole process group) on destroy. Any change to its inputs replaces it.

terraform {
  required_version = ">= 1.0.3"
  required_providers {
    null = {
      source  = "hashicorp/null"
      version = ">= 2.1.2, < 4.0.0"
    }
  }
}

resource "null_resource" "this" {
  triggers = {
    name    = var.name
    run_dir = var.run_dir
    health  = var.health_url == "" ? "-" : var.health_url
    command = var.command
    env     = join(" ", [for k, v in var.environment : "${k}=${v}"])
    script  = abspath("${path.module}/../../scripts/service.sh")
  }

  provisioner "local-exec" {
    command = join(" ", [
      self.triggers.env,
      self.triggers.script, "start", self.triggers.name, self.triggers.run_dir, self.triggers.health,
      "--", self.triggers.command,
    ])
    interpreter = ["/bin/bash", "-c"]
  }

  provisioner "local-exec" {
    when        = destroy
    command     = "${self.triggers.script} stop ${self.triggers.name} ${self.triggers.run_dir}"
    interpreter = ["/bin/bash", "-c"]
  }
}
