"""`vmsbridge push` (placeholder: filled in by the issue that builds it)."""
