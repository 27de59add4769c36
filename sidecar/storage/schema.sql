-- The embedded sidecar's SQLite schema (version in PRAGMA user_version: storage/sql.py
-- SCHEMA_VERSION). Every statement is idempotent: it runs at every start.
CREATE TABLE IF NOT EXISTS instances (
    instance_id        TEXT PRIMARY KEY,
    name               TEXT NOT NULL,
    execution_id       TEXT NOT NULL,
    status             INTEGER NOT NULL,
    created_at         REAL NOT NULL,
    updated_at         REAL NOT NULL,
    input              TEXT,
    output             TEXT,
    custom_status      TEXT,
    failure            BLOB,
    parent             BLOB,
    scheduled_start    REAL,
    stalled            BLOB,
    suspended          INTEGER NOT NULL DEFAULT 0,
    version            TEXT
);
CREATE INDEX IF NOT EXISTS instances_active ON instances(status) WHERE status NOT IN (1, 3, 5);
CREATE TABLE IF NOT EXISTS history (
    instance_id TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    event       BLOB NOT NULL,
    PRIMARY KEY (instance_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS inbox (
    id          INTEGER PRIMARY KEY,
    instance_id TEXT NOT NULL,
    event       BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS inbox_instance ON inbox(instance_id, id);
CREATE TABLE IF NOT EXISTS activities (
    instance_id  TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    task_id      INTEGER NOT NULL,
    request      BLOB NOT NULL,
    PRIMARY KEY (instance_id, task_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS timers (
    instance_id  TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    timer_id     INTEGER NOT NULL,
    fire_at      REAL NOT NULL,
    event        BLOB NOT NULL,
    PRIMARY KEY (instance_id, timer_id)
) WITHOUT ROWID;
-- Deleting an instance's row deletes everything else it owns: purge and ID reuse are one
-- statement, and a start on a fresh ID (no row) costs nothing. INSERT OR REPLACE does not fire
-- it (recursive_triggers is off), so rewriting the row keeps the rest.
CREATE TRIGGER IF NOT EXISTS instance_deleted AFTER DELETE ON instances BEGIN
    DELETE FROM history WHERE instance_id = old.instance_id;
    DELETE FROM inbox WHERE instance_id = old.instance_id;
    DELETE FROM activities WHERE instance_id = old.instance_id;
    DELETE FROM timers WHERE instance_id = old.instance_id;
END;
CREATE TABLE IF NOT EXISTS state (
    store TEXT NOT NULL,
    key   TEXT NOT NULL,
    value BLOB NOT NULL,
    etag  INTEGER NOT NULL,
    metadata TEXT,
    PRIMARY KEY (store, key)
) WITHOUT ROWID;
