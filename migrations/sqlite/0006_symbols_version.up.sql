-- A counter that moves whenever a symbol is written, so that a copy of the symbols held in
-- memory (the symbol signal of a search, `daemon/src/search/symtab.rs`) knows with one read
-- whether it is current. Deleting a file or a project removes its symbols through cascades,
-- which fire these triggers too. A restore drops the triggers while it loads and moves the
-- counter itself when it finishes.
CREATE TABLE symbols_version (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
) STRICT;

INSERT INTO symbols_version (id, version) VALUES (1, 0);

CREATE TRIGGER symbols_version_insert AFTER INSERT ON symbols
BEGIN
    UPDATE symbols_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER symbols_version_delete AFTER DELETE ON symbols
BEGIN
    UPDATE symbols_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER symbols_version_update AFTER UPDATE ON symbols
BEGIN
    UPDATE symbols_version SET version = version + 1 WHERE id = 1;
END;
