# The local environment: the whole system on this machine, started and stopped by Terraform.
#
# Every resource is a null_resource whose provisioners call the project's own commands
# (infra/scripts/*.sh around `taxi-mlops`, `mlflow server`): Terraform tracks what it started,
# `apply` with other variables changes it, `destroy` stops it. No cloud, no Docker, works
# offline with the null provider from a plugin dir (see infra/README.md).

terraform {
  required_version = ">= 1.0.3"
  required_providers {
    null = {
      source  = "hashicorp/null"
      version = ">= 2.1.2, < 4.0.0"
    }
  }
}

locals {
  scripts     = abspath("${path.module}/../../scripts")
  run_dir     = "${var.home}/run/terraform"
  mlflow_url  = "http://127.0.0.1:${var.mlflow_port}"
  level3_url  = "http://127.0.0.1:${var.level3_port}"
  environment = "TAXI_MLOPS_HOME=${var.home} MLFLOW_TRACKING_URI=${local.mlflow_url}"
}

# MLflow tracking server and registry (SQLite backend, local artifact store).
resource "null_resource" "mlflow" {
  triggers = {
    scripts = local.scripts
    run_dir = local.run_dir
    port    = var.mlflow_port
    home    = var.home
    bin     = var.bin_dir
  }

  provisioner "local-exec" {
    command = join(" ", [
      "MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false MLFLOW_DISABLE_TELEMETRY=true",
      "${self.triggers.scripts}/service.sh start mlflow ${self.triggers.run_dir}",
      "http://127.0.0.1:${self.triggers.port}/health --",
      "${self.triggers.bin}/mlflow server --workers 1 --host 127.0.0.1 --port ${self.triggers.port}",
      "--backend-store-uri sqlite:///${self.triggers.home}/mlflow-server/mlflow.db",
      "--artifacts-destination ${self.triggers.home}/mlflow-server/artifacts",
    ])
    interpreter = ["/bin/bash", "-c"]
  }

  provisioner "local-exec" {
    when        = destroy
    command     = "${self.triggers.scripts}/service.sh stop mlflow ${self.triggers.run_dir}"
    interpreter = ["/bin/bash", "-c"]
  }
}

# A champion must exist before level 3 can serve: train one on first apply if the registry
# has none (level-2 flow; generated data unless a data folder is given).
resource "null_resource" "champion" {
  depends_on = [null_resource.mlflow]
  triggers = {
    mlflow = null_resource.mlflow.id
  }

  provisioner "local-exec" {
    command     = "${local.scripts}/ensure_champion.sh"
    interpreter = ["/bin/bash", "-c"]
    environment = {
      TAXI_MLOPS_HOME     = var.home
      MLFLOW_TRACKING_URI = local.mlflow_url
      TAXI_MLOPS_BIN      = var.bin_dir
      TRAIN_ARGS          = var.bootstrap_train_args
    }
  }
}

# The level-3 A/B service (gunicorn): blue = the registry's champion.
resource "null_resource" "level3" {
  depends_on = [null_resource.champion]
  triggers = {
    scripts = local.scripts
    run_dir = local.run_dir
    port    = var.level3_port
    workers = var.level3_workers
    env     = local.environment
    bin     = var.bin_dir
  }

  provisioner "local-exec" {
    command = join(" ", [
      "${self.triggers.env}",
      "${self.triggers.scripts}/service.sh start level3 ${self.triggers.run_dir}",
      "http://127.0.0.1:${self.triggers.port}/health --",
      "${self.triggers.bin}/taxi-mlops level3 serve --port ${self.triggers.port}",
      "--workers ${self.triggers.workers}",
    ])
    interpreter = ["/bin/bash", "-c"]
  }

  provisioner "local-exec" {
    when        = destroy
    command     = "${self.triggers.scripts}/service.sh stop level3 ${self.triggers.run_dir}"
    interpreter = ["/bin/bash", "-c"]
  }
}

# Green and its share of traffic: a change of either is one call to the level-3 deploy API.
resource "null_resource" "split" {
  depends_on = [null_resource.level3]
  triggers = {
    green_version = var.green_version
    green_share   = var.green_share
    level3        = null_resource.level3.id
  }

  provisioner "local-exec" {
    command     = "${local.scripts}/set_split.sh"
    interpreter = ["/bin/bash", "-c"]
    environment = {
      TAXI_MLOPS_HOME     = var.home
      MLFLOW_TRACKING_URI = local.mlflow_url
      TAXI_MLOPS_BIN      = var.bin_dir
      LEVEL3_URL          = local.level3_url
      GREEN_VERSION       = var.green_version
      GREEN_SHARE         = var.green_share
    }
  }
}

# The level-4 monitoring flow on a cron schedule (a Prefect deployment served by this process).
resource "null_resource" "monitoring" {
  count      = var.monitoring_enabled ? 1 : 0
  depends_on = [null_resource.level3]
  triggers = {
    scripts = local.scripts
    run_dir = local.run_dir
    cron    = var.monitoring_cron
    hours   = var.monitoring_window_hours
    env     = local.environment
    url     = local.level3_url
    bin     = var.bin_dir
  }

  provisioner "local-exec" {
    command = join(" ", [
      "${self.triggers.env}",
      "${self.triggers.scripts}/service.sh start level4-schedule ${self.triggers.run_dir} - --",
      "${self.triggers.bin}/taxi-mlops level4 schedule --cron '${self.triggers.cron}'",
      "--window-hours ${self.triggers.hours} --url ${self.triggers.url}",
    ])
    interpreter = ["/bin/bash", "-c"]
  }

  provisioner "local-exec" {
    when        = destroy
    command     = "${self.triggers.scripts}/service.sh stop level4-schedule ${self.triggers.run_dir}"
    interpreter = ["/bin/bash", "-c"]
  }
}
