"""The Dapr runtime API a workflow app uses, emulated over the engine (docs/sidecar-apis.md):
``runtime_grpc.py`` and ``runtime_http.py`` are its two edges, ``workflow_management.py`` the
workflow API they share, ``metadata.py`` the metadata API, ``state_store.py`` the state API's
store and ``components.py`` the component files that name the stores. Like every subpackage of
``sidecar``, this ``__init__`` imports nothing.
"""
