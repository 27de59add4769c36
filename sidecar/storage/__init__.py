"""The sidecar's SQLite storage: ``store.py`` (the group-commit writer and reads), ``sql.py``
(every statement and row loader) and ``schema.sql``.

Like every subpackage of ``sidecar``, this ``__init__`` imports nothing: importing one module
never pulls in the others (see docs/sidecar-internals.md, "Module map").
"""
