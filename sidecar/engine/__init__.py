"""The workflow engine, one job a module (docs/sidecar-internals.md, "Module map").

``core.Engine`` is what the sidecar builds and the edges call, through the typed interface in
``interface.py``. Like every subpackage of ``sidecar``, this ``__init__`` imports nothing.
"""
