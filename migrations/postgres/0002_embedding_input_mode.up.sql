-- How each embedding's text was sent: whole, or, being longer than the provider's per-input
-- limit, split into pieces whose vectors were averaged, or truncated to its beginning. Rows stored
-- before this migration carry no record and read 'whole'.
ALTER TABLE embeddings ADD COLUMN input_mode text NOT NULL DEFAULT 'whole'
    CONSTRAINT embeddings_input_mode_check CHECK (input_mode IN ('whole', 'split', 'truncated'));
