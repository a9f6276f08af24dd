"""Upload sessions: multipart create/complete/abort/list parts, presigned upload URLs, reaping."""
