output "bucket" {
  description = "The state bucket."
  value       = aws_s3_bucket.state.bucket
}

output "lock_table" {
  description = "The DynamoDB lock table."
  value       = aws_dynamodb_table.lock.name
}

output "kms_key_arn" {
  description = "The key encrypting state and locks (the backend's kms_key_id)."
  value       = aws_kms_key.state.arn
}

output "backend_config" {
  description = "The contents of infra/envs/aws/backend.hcl for `terraform init -backend-config=backend.hcl`."
  value       = <<-EOT
    bucket         = "${aws_s3_bucket.state.bucket}"
    region         = "${var.region}"
    dynamodb_table = "${aws_dynamodb_table.lock.name}"
    kms_key_id     = "${aws_kms_key.state.arn}"
  EOT
}
