-- How each embedding's text was sent: whole, or, being longer than the provider's per-input
-- limit, split into pieces whose vectors were averaged, or truncated to its beginning. Rows stored
-- before this migration carry no record and read 'whole'.
ALTER TABLE embeddings ADD COLUMN input_mode TEXT NOT NULL DEFAULT 'whole'
    CHECK (input_mode IN ('whole', 'split', 'truncated'));
