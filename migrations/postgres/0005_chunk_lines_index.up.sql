-- The symbol signal of a search looks up the chunk that holds each symbol's first line. The index
-- covers that lookup (as SQLite's 0005 does), so it reads no heap row.
CREATE INDEX chunks_file_lines_idx ON chunks (file_id, ordinal) INCLUDE (start_line, end_line, id);
