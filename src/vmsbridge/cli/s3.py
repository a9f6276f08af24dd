"""`vmsbridge s3` (placeholder: filled in by the issue that builds it)."""
