ALTER TABLE embeddings DROP COLUMN input_mode;
