-- Finding the chunk that holds a symbol's first line (the symbol signal of a search) reads each
-- of the file's chunks' lines. In the table those columns sit after the content, so every read
-- walked the content's overflow pages; this index holds them, so the lookup never reads a row.
CREATE INDEX chunks_file_lines_idx ON chunks (file_id, ordinal, start_line, end_line);
