-- One row that readiness rewrites to learn whether the database can be
-- written (after a failed commit), since a read succeeds on a database whose
-- files cannot be written.
CREATE TABLE write_probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at INTEGER NOT NULL
);
