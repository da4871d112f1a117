"""Object-store backends: one small interface, a local directory and S3."""
