-- Makes chunks.lexical_tsv generated again, by 0001's function. A plain column cannot become
-- generated in place, so it is dropped and added back (recomputing every row) with its GIN index;
-- it was the table's last column, so the schema comes back as 0001 made it.
ALTER TABLE chunks DROP COLUMN lexical_tsv;

CREATE OR REPLACE FUNCTION semdex_lexical_tsvector(doc text) RETURNS tsvector
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT coalesce(
        string_agg(
            '''' || replace(replace(lower(t), '\', '\\'), '''', '''''') || ''':' || least(n, 16383),
            ' '
        ),
        ''
    )::tsvector
    FROM regexp_split_to_table(doc, '\s+') WITH ORDINALITY AS u(t, n)
    WHERE t <> '' AND octet_length(t) < 2048
$$;

ALTER TABLE chunks ADD COLUMN lexical_tsv tsvector GENERATED ALWAYS AS (semdex_lexical_tsvector(lexical)) STORED;
CREATE INDEX chunks_lexical_idx ON chunks USING gin (lexical_tsv);
