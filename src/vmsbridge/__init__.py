"""vmsbridge: video incidents from video management systems into S3-compatible storage."""

__version__ = "0.1.0"
