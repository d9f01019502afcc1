# The local environment: the whole system on this machine, started and stopped by Terraform.
#
# Every process is a `local_service` module (a null_resource whose provisioners call
# infra/scripts/service.sh around `taxi-mlops` or `mlflow server`): Terraform tracks what it started,
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
  scripts     = abspath("${path.module}/../../scripts") # create-time helpers
  run_dir     = "${var.home}/run/terraform"
  mlflow_url  = "http://127.0.0.1:${var.mlflow_port}"
  level3_url  = "http://127.0.0.1:${var.level3_port}"
  environment = { TAXI_MLOPS_HOME = var.home, MLFLOW_TRACKING_URI = local.mlflow_url }
}

# MLflow tracking server and registry (SQLite backend, local artifact store).
module "mlflow" {
  source     = "../../modules/local_service"
  name       = "mlflow"
  run_dir    = local.run_dir
  health_url = "${local.mlflow_url}/health"
  # Backend store and artifacts under home (`taxi-mlops level2 server`: the same command the
  # cloud's MLflow task runs, there with PostgreSQL and S3 from its environment).
  command = "${var.bin_dir}/taxi-mlops level2 server --workers 1 --host 127.0.0.1 --port ${var.mlflow_port}"
  environment = {
    TAXI_MLOPS_HOME          = var.home
    MLFLOW_DISABLE_TELEMETRY = "true"
  }
}

# A champion must exist before level 3 can serve: train one on first apply if the registry
# has none (level-2 flow; generated data unless a data folder is given).
resource "null_resource" "champion" {
  triggers = {
    mlflow = module.mlflow.id
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
module "level3" {
  source      = "../../modules/local_service"
  name        = "level3"
  run_dir     = local.run_dir
  health_url  = "${local.level3_url}/health"
  command     = "${var.bin_dir}/taxi-mlops level3 serve --port ${var.level3_port} --workers ${var.level3_workers}"
  environment = local.environment
  depends_on  = [null_resource.champion]
}

# Green and its share of traffic: a change of either is one call to the level-3 deploy API.
resource "null_resource" "split" {
  triggers = {
    green_version = var.green_version
    green_share   = var.green_share
    level3        = module.level3.id
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
module "monitoring" {
  source  = "../../modules/local_service"
  count   = var.monitoring_enabled ? 1 : 0
  name    = "level4-schedule"
  run_dir = local.run_dir
  command = join(" ", [
    "${var.bin_dir}/taxi-mlops level4 schedule --cron '${var.monitoring_cron}'",
    "--window-hours ${var.monitoring_window_hours} --url ${local.level3_url}",
  ])
  environment = local.environment
  depends_on  = [module.level3]
}
