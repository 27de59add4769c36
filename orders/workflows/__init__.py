"""The order workflow and what hosts it: ``order_processing`` (the workflow, orchestration only),
``activities`` (its I/O, each one idempotent) and ``runtime`` (their registration with the SDK's
``WorkflowRuntime``). The worker process hosts them; the web process reaches the workflow
through ``orders.workflow_client``."""
