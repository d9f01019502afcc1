# The cloud shape of the system (see infra/README.md), the same topology `taxi-mlops stack`
# runs on one machine: level-3 replicas (one ECS service) that share the state database on RDS
# behind an ALB, MLflow (RDS backend, S3 artifacts), a training task, and level 4 as a scheduled
# task calling the level-3 admin API inside the VPC. Network (VPC, subnets, NAT or endpoints) is
# brought in by variables.

locals {
  name       = "taxi-mlops-${var.environment}"
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  image      = "${aws_ecr_repository.app.repository_url}:${var.image_tag}"
  # no image yet (the first apply): task definitions exist, no task runs
  running     = var.image_tag != ""
  internal    = aws_service_discovery_private_dns_namespace.internal.name
  mlflow_url  = "http://mlflow.${local.internal}:5000"
  level3_url  = "https://${var.domain_name}"
  level3_port = 8100
  # what level 4 calls: the replicas' own address inside the VPC, not the public name
  level3_internal_url = "http://level3.${local.internal}:${local.level3_port}"
  app_split           = var.split_mode == "app"
  monitoring_enabled  = var.enable_monitoring && local.app_split && local.running && var.serve
  admin_cidrs         = length(var.admin_cidrs) > 0 ? var.admin_cidrs : var.allowed_cidrs
  # An ALB rule condition holds at most 3 values (and a rule 5). Added to the admin rule's
  # priority, so that more networks fail the plan with this message, not the apply.
  admin_cidrs_fit = length(local.admin_cidrs) > 3 ? tonumber("admin_cidrs (or allowed_cidrs, its default) may list at most 3 networks: an ALB rule condition holds 3 values") : 0
  # The state database is MLflow's database on the RDS instance: its tables and its own
  # Alembic version table beside MLflow's (tests/integration/test_state_backends.py). The
  # user and password come from the RDS-managed secret, as two variables of their own.
  state_db_url = "postgresql+psycopg2://${aws_db_instance.mlflow.address}:${aws_db_instance.mlflow.port}/${aws_db_instance.mlflow.db_name}?sslmode=require"
  # Traffic to a green service that runs no task would be answered 503 by the ALB. Terraform
  # 1.0 has no preconditions: converting the message to a number fails the plan with it.
  green_weight = var.green_weight > 0 && var.green_version == 0 ? tonumber("green_weight > 0 needs a green_version: the green service runs no task without one") : var.green_weight
  blue_weight  = 100 - local.green_weight
  # the listener's targets: the one level-3 target group, or blue and green by weight
  variants = local.app_split ? { level3 = 100 } : { blue = local.blue_weight, green = local.green_weight }
}

# ------------------------------------------------------------------------------ encryption

resource "aws_kms_key" "main" {
  description         = "${local.name}: S3 artifacts, RDS, ECR, logs, SNS"
  enable_key_rotation = true
  policy              = data.aws_iam_policy_document.kms.json
}

resource "aws_kms_alias" "main" {
  name          = "alias/${local.name}"
  target_key_id = aws_kms_key.main.key_id
}

data "aws_iam_policy_document" "kms" {
  # checkov:skip=CKV_AWS_111:A key policy's "*" resource is the key itself, not every resource.
  # checkov:skip=CKV_AWS_356:A key policy's "*" resource is the key itself, not every resource.
  # checkov:skip=CKV_AWS_109:The account root must administer its key (AWS's default key policy).
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"] # in a key policy, "*" is this key
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }
  # CloudWatch alarms publish to the SNS topic this key encrypts: without this statement every
  # alarm notification fails ("CloudWatch Alarms does not have authorization to access the SNS
  # topic encryption key") and nobody is told.
  statement {
    sid       = "CloudWatchAlarmsPublish"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey*"]
    resources = ["*"] # in a key policy, "*" is this key
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }
  }
  statement {
    sid       = "CloudWatchLogsUse"
    actions   = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"]
    resources = ["*"] # in a key policy, "*" is this key
    principals {
      type        = "Service"
      identifiers = ["logs.${var.region}.amazonaws.com"]
    }
  }
}

# --------------------------------------------------------------------- artifacts (S3)

resource "aws_s3_bucket" "artifacts" {
  # checkov:skip=CKV2_AWS_62:Nothing consumes artifact events; MLflow reads the bucket itself.
  # checkov:skip=CKV_AWS_144:Cross-region replication is an organisation's DR choice; versioning and KMS protect this copy.
  bucket_prefix = "${local.name}-artifacts-"
}

resource "aws_s3_bucket_logging" "artifacts" {
  bucket        = aws_s3_bucket.artifacts.id
  target_bucket = aws_s3_bucket.logs.id
  target_prefix = "s3/artifacts/"
}

# Access logs of the load balancer and the artifact bucket. ALB log delivery requires SSE-S3.
resource "aws_s3_bucket" "logs" {
  # checkov:skip=CKV_AWS_18:The log bucket does not log itself (it would log its own writes forever).
  # checkov:skip=CKV_AWS_145:ALB access log delivery supports SSE-S3 only, not KMS.
  # checkov:skip=CKV2_AWS_62:Nothing consumes log delivery events.
  # checkov:skip=CKV_AWS_144:Logs stay in the region they describe.
  bucket_prefix = "${local.name}-logs-"
}

resource "aws_s3_bucket_public_access_block" "logs" {
  bucket                  = aws_s3_bucket.logs.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "logs" {
  bucket = aws_s3_bucket.logs.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "logs" {
  bucket = aws_s3_bucket.logs.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "logs" {
  bucket = aws_s3_bucket.logs.id
  rule {
    id     = "expire-logs"
    status = "Enabled"
    filter {}
    expiration {
      days = var.log_retention_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 30
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
}

data "aws_elb_service_account" "main" {}

data "aws_iam_policy_document" "logs" {
  statement {
    sid       = "AlbLogDelivery"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.logs.arn}/alb/AWSLogs/${local.account_id}/*"]
    principals {
      type        = "AWS"
      identifiers = [data.aws_elb_service_account.main.arn]
    }
  }
  statement {
    sid       = "S3ServerAccessLogs"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.logs.arn}/s3/*"]
    principals {
      type        = "Service"
      identifiers = ["logging.s3.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.logs.arn, "${aws_s3_bucket.logs.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "logs" {
  bucket = aws_s3_bucket.logs.id
  policy = data.aws_iam_policy_document.logs.json
}

resource "aws_s3_bucket_public_access_block" "artifacts" {
  bucket                  = aws_s3_bucket.artifacts.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_versioning" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.main.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id
  rule {
    id     = "old-versions-and-uploads"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = 90
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
}

resource "aws_s3_bucket_policy" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id
  policy = data.aws_iam_policy_document.artifacts_tls.json
}

data "aws_iam_policy_document" "artifacts_tls" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.artifacts.arn, "${aws_s3_bucket.artifacts.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

# -------------------------------------------------------------- MLflow backend (RDS)

resource "aws_db_subnet_group" "mlflow" {
  name       = "${local.name}-mlflow"
  subnet_ids = var.private_subnet_ids
}

resource "aws_db_parameter_group" "mlflow" {
  name   = "${local.name}-mlflow"
  family = "postgres16"
  parameter {
    name  = "log_min_duration_statement"
    value = "1000"
  }
  parameter {
    name         = "rds.force_ssl"
    value        = "1"
    apply_method = "pending-reboot"
  }
}

resource "aws_db_instance" "mlflow" {
  identifier                          = "${local.name}-mlflow"
  engine                              = "postgres"
  engine_version                      = "16"
  instance_class                      = var.db_instance_class
  allocated_storage                   = 20
  max_allocated_storage               = 200
  db_name                             = "mlflow"
  username                            = "mlflow"
  manage_master_user_password         = true
  master_user_secret_kms_key_id       = aws_kms_key.main.arn
  db_subnet_group_name                = aws_db_subnet_group.mlflow.name
  parameter_group_name                = aws_db_parameter_group.mlflow.name
  vpc_security_group_ids              = [aws_security_group.db.id]
  storage_encrypted                   = true
  kms_key_id                          = aws_kms_key.main.arn
  multi_az                            = true
  publicly_accessible                 = false
  backup_retention_period             = 14
  deletion_protection                 = true
  skip_final_snapshot                 = false
  final_snapshot_identifier           = "${local.name}-mlflow-final"
  copy_tags_to_snapshot               = true
  auto_minor_version_upgrade          = true
  iam_database_authentication_enabled = true
  performance_insights_enabled        = true
  performance_insights_kms_key_id     = aws_kms_key.main.arn
  enabled_cloudwatch_logs_exports     = ["postgresql", "upgrade"]
  monitoring_interval                 = 60
  monitoring_role_arn                 = aws_iam_role.rds_monitoring.arn
}

# -------------------------------------------------------------------------- images (ECR)

resource "aws_ecr_repository" "app" {
  name                 = local.name
  image_tag_mutability = "IMMUTABLE"
  image_scanning_configuration {
    scan_on_push = true
  }
  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = aws_kms_key.main.arn
  }
}

resource "aws_ecr_lifecycle_policy" "app" {
  repository = aws_ecr_repository.app.name
  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "keep the last 50 images"
      selection    = { tagStatus = "any", countType = "imageCountMoreThan", countNumber = 50 }
      action       = { type = "expire" }
    }]
  })
}
