"""The database: every SQL query lives in this package; callers own the Session."""
