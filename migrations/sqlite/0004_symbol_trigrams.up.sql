-- Substring search on symbol names ("password" finding `hashPassword`) through a trigram index
-- instead of a LIKE scan of every name. An external-content FTS5 table over the qualified names
-- (a qualified name ends with the symbol's name), kept in sync by triggers as chunks_fts is.
CREATE VIRTUAL TABLE symbols_trigram USING fts5 (
    qualified_name,
    content = 'symbols',
    content_rowid = 'id',
    tokenize = 'trigram'
);

INSERT INTO symbols_trigram (symbols_trigram) VALUES ('rebuild');

CREATE TRIGGER symbols_trigram_insert AFTER INSERT ON symbols
BEGIN
    INSERT INTO symbols_trigram (rowid, qualified_name) VALUES (NEW.id, NEW.qualified_name);
END;

CREATE TRIGGER symbols_trigram_delete AFTER DELETE ON symbols
BEGIN
    INSERT INTO symbols_trigram (symbols_trigram, rowid, qualified_name)
        VALUES ('delete', OLD.id, OLD.qualified_name);
END;

CREATE TRIGGER symbols_trigram_update AFTER UPDATE OF qualified_name ON symbols
BEGIN
    INSERT INTO symbols_trigram (symbols_trigram, rowid, qualified_name)
        VALUES ('delete', OLD.id, OLD.qualified_name);
    INSERT INTO symbols_trigram (rowid, qualified_name) VALUES (NEW.id, NEW.qualified_name);
END;
