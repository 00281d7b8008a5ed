"""An --app module that raises while it is imported, as one reading missing settings does."""

raise RuntimeError("SMTP_HOST is not set")
