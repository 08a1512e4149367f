DROP TRIGGER symbols_trigram_update;
DROP TRIGGER symbols_trigram_delete;
DROP TRIGGER symbols_trigram_insert;
DROP TABLE symbols_trigram;
