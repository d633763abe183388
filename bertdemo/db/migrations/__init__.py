"""Alembic migration environment of bertdemo's database (see bertdemo.db.migrate).

`env.py` and `versions/` are read by Alembic from this folder; nothing here is imported by the app.
"""
