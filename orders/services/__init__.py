"""Every write to the order domain, by subdomain. Views, admin actions, commands, activities and
runworker's sweeps call these; nothing else writes.

Locking: each order-level service runs in one transaction that first locks the order row
(``SELECT ... FOR UPDATE`` on PostgreSQL; on SQLite every write transaction is ``BEGIN
IMMEDIATE`` and so already serialised). Stock moves with conditional ``UPDATE`` statements, never
read-modify-write, so concurrent orders cannot oversell.

Idempotency: an effect is written together with its ``LedgerEntry`` (order, step) row; a service
that finds its row returns what was recorded and changes nothing, so an activity that runs twice
(at-least-once delivery) has one effect.
"""
