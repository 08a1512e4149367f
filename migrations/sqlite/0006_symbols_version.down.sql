DROP TRIGGER symbols_version_update;
DROP TRIGGER symbols_version_delete;
DROP TRIGGER symbols_version_insert;
DROP TABLE symbols_version;
