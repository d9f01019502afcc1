# Security groups and the load balancer. Every rule is a resource of its own
# (aws_vpc_security_group_*_rule) and no group has inline rules: mixing the two styles makes
# each apply remove what the other added. Terraform removes AWS's default allow-all egress.

resource "aws_security_group" "alb" {
  name        = "${local.name}-alb"
  description = "Load balancer: HTTPS from the allowed client networks"
  vpc_id      = var.vpc_id
}

resource "aws_security_group" "services" {
  name        = "${local.name}-services"
  description = "ECS tasks: level 3, MLflow, training, monitoring"
  vpc_id      = var.vpc_id
}

resource "aws_security_group" "db" {
  name        = "${local.name}-db"
  description = "PostgreSQL: MLflow's backend and the state database, from the tasks only"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "alb_https" {
  for_each          = toset(var.allowed_cidrs)
  description       = "HTTPS from clients"
  security_group_id = aws_security_group.alb.id
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "alb_to_level3" {
  description                  = "to the level-3 tasks"
  security_group_id            = aws_security_group.alb.id
  ip_protocol                  = "tcp"
  from_port                    = local.level3_port
  to_port                      = local.level3_port
  referenced_security_group_id = aws_security_group.services.id
}

resource "aws_vpc_security_group_ingress_rule" "level3_from_alb" {
  description                  = "level 3 from the load balancer"
  security_group_id            = aws_security_group.services.id
  ip_protocol                  = "tcp"
  from_port                    = local.level3_port
  to_port                      = local.level3_port
  referenced_security_group_id = aws_security_group.alb.id
}

# Inside the group: the tasks call MLflow (5000) and level 4 calls the level-3 admin API (8100).
resource "aws_vpc_security_group_ingress_rule" "among_tasks" {
  for_each                     = { mlflow = 5000, level3 = local.level3_port }
  description                  = "${each.key} from the tasks"
  security_group_id            = aws_security_group.services.id
  ip_protocol                  = "tcp"
  from_port                    = each.value
  to_port                      = each.value
  referenced_security_group_id = aws_security_group.services.id
}

resource "aws_vpc_security_group_egress_rule" "among_tasks" {
  for_each                     = { mlflow = 5000, level3 = local.level3_port }
  description                  = "tasks to ${each.key}"
  security_group_id            = aws_security_group.services.id
  ip_protocol                  = "tcp"
  from_port                    = each.value
  to_port                      = each.value
  referenced_security_group_id = aws_security_group.services.id
}

resource "aws_vpc_security_group_egress_rule" "tasks_to_aws" {
  # checkov:skip=CKV_AWS_382:HTTPS to AWS APIs (ECR, S3, logs, secrets) through NAT or endpoints, and to the TLC's data for training: one port, not every port.
  description       = "HTTPS to AWS APIs (ECR, S3, logs, secrets) through NAT or endpoints"
  security_group_id = aws_security_group.services.id
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "tasks_to_db" {
  description                  = "tasks to PostgreSQL (MLflow's backend, the state database)"
  security_group_id            = aws_security_group.services.id
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.db.id
}

resource "aws_vpc_security_group_ingress_rule" "db_from_tasks" {
  description                  = "PostgreSQL from the tasks"
  security_group_id            = aws_security_group.db.id
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.services.id
}

resource "aws_lb" "public" {
  name                       = local.name
  load_balancer_type         = "application"
  internal                   = false
  security_groups            = [aws_security_group.alb.id]
  subnets                    = var.public_subnet_ids
  drop_invalid_header_fields = true
  enable_deletion_protection = true

  access_logs {
    bucket  = aws_s3_bucket.logs.id
    prefix  = "alb"
    enabled = true
  }
}

# Public entry point: AWS managed rule sets for common exploits and known bad inputs.
resource "aws_wafv2_web_acl" "public" {
  name  = local.name
  scope = "REGIONAL"

  default_action {
    allow {}
  }

  rule {
    name     = "AWSManagedRulesCommonRuleSet"
    priority = 1
    override_action {
      none {}
    }
    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesCommonRuleSet"
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "AWSManagedRulesCommonRuleSet"
      sampled_requests_enabled   = true
    }
  }

  rule {
    name     = "AWSManagedRulesKnownBadInputsRuleSet"
    priority = 2
    override_action {
      none {}
    }
    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesKnownBadInputsRuleSet"
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "AWSManagedRulesKnownBadInputsRuleSet"
      sampled_requests_enabled   = true
    }
  }

  # Anonymisers (Tor, VPN relays) are blocked. Requests from cloud hosting ranges are only
  # counted: a service calling the prediction API from its own servers is a normal client.
  rule {
    name     = "AWSManagedRulesAnonymousIpList"
    priority = 3
    override_action {
      none {}
    }
    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesAnonymousIpList"
        rule_action_override {
          name = "HostingProviderIPList"
          action_to_use {
            count {}
          }
        }
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "AWSManagedRulesAnonymousIpList"
      sampled_requests_enabled   = true
    }
  }

  visibility_config {
    cloudwatch_metrics_enabled = true
    metric_name                = local.name
    sampled_requests_enabled   = true
  }
}

# WAF log group names must start with aws-waf-logs-.
resource "aws_cloudwatch_log_group" "waf" {
  name              = "aws-waf-logs-${local.name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

resource "aws_wafv2_web_acl_logging_configuration" "public" {
  resource_arn            = aws_wafv2_web_acl.public.arn
  log_destination_configs = [aws_cloudwatch_log_group.waf.arn]
}

resource "aws_wafv2_web_acl_association" "public" {
  resource_arn = aws_lb.public.arn
  web_acl_arn  = aws_wafv2_web_acl.public.arn
}

# One target group per variant: `level3` (split_mode = app), or `blue` and `green` (alb).
resource "aws_lb_target_group" "model" {
  for_each    = local.variants
  name        = "${local.name}-${each.key}"
  port        = local.level3_port
  protocol    = "HTTP"
  target_type = "ip"
  vpc_id      = var.vpc_id

  health_check {
    path                = "/health"
    matcher             = "200"
    interval            = 15
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }
  deregistration_delay = 30
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.public.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.certificate_arn

  default_action {
    type = "forward"
    forward {
      dynamic "target_group" {
        for_each = local.variants
        content {
          arn    = aws_lb_target_group.model[target_group.key].arn
          weight = target_group.value
        }
      }
      # Off by default. When on, a client stays on its target group for the duration even
      # after that group's weight went to 0 (see alb_stickiness_seconds).
      stickiness {
        enabled  = var.alb_stickiness_seconds > 0
        duration = max(var.alb_stickiness_seconds, 1)
      }
    }
  }
}

# The admin API (/admin/*) answers only the admin networks; anyone else gets 403 from the load
# balancer before a token is even read. Level 4 calls the replicas inside the VPC instead.
resource "aws_lb_listener_rule" "admin_allowed" {
  listener_arn = aws_lb_listener.https.arn
  priority     = 10 + local.admin_cidrs_fit
  action {
    type = "forward"
    forward {
      dynamic "target_group" {
        for_each = local.variants
        content {
          arn    = aws_lb_target_group.model[target_group.key].arn
          weight = target_group.value
        }
      }
    }
  }
  condition {
    path_pattern {
      values = ["/admin/*"]
    }
  }
  condition {
    source_ip {
      values = local.admin_cidrs
    }
  }
}

resource "aws_lb_listener_rule" "admin_refused" {
  listener_arn = aws_lb_listener.https.arn
  priority     = 11
  action {
    type = "fixed-response"
    fixed_response {
      content_type = "application/json"
      message_body = "{\"error\": \"the admin API is not reachable from this network\"}"
      status_code  = "403"
    }
  }
  condition {
    path_pattern {
      values = ["/admin/*"]
    }
  }
}

resource "aws_route53_record" "public" {
  count   = var.route53_zone_id == "" ? 0 : 1
  zone_id = var.route53_zone_id
  name    = var.domain_name
  type    = "A"
  alias {
    name                   = aws_lb.public.dns_name
    zone_id                = aws_lb.public.zone_id
    evaluate_target_health = true
  }
}

resource "aws_service_discovery_private_dns_namespace" "internal" {
  name = "${var.environment}.taxi-mlops.internal"
  vpc  = var.vpc_id
}

# Private names: MLflow for every task, and the level-3 replicas for level 4 (multivalue A
# records of the healthy tasks).
resource "aws_service_discovery_service" "internal" {
  for_each = toset(["mlflow", "level3"])
  name     = each.key
  dns_config {
    namespace_id   = aws_service_discovery_private_dns_namespace.internal.id
    routing_policy = "MULTIVALUE"
    dns_records {
      ttl  = 10
      type = "A"
    }
  }
  health_check_custom_config {
    failure_threshold = 1
  }
}
