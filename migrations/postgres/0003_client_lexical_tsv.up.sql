-- chunks.lexical_tsv becomes a plain column that semdex fills itself. Computing the generated
-- column (semdex_lexical_tsvector over every document) was the largest single cost of writing
-- chunks; the store now computes the same tsvector in the client and sends it in its binary COPY
-- (daemon/src/store/tsvector.rs), and asks semdex_lexical_tsvector only for the rare document
-- whose result could depend on the database's collation. DROP EXPRESSION keeps the values already
-- stored; NOT NULL makes a writer that forgets the column fail instead of leaving chunks that
-- lexical search never finds.
ALTER TABLE chunks ALTER COLUMN lexical_tsv DROP EXPRESSION;
ALTER TABLE chunks ALTER COLUMN lexical_tsv SET NOT NULL;

-- A lexeme holds at most 2,046 bytes: 0001 left out terms of 2,048 bytes or more, so a term of
-- exactly 2,047 made the function (and the chunk's write) fail. Such terms are now left out too,
-- as the client does. No stored row can hold one (its write failed), so nothing is recomputed.
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
    WHERE t <> '' AND octet_length(t) < 2047
$$;
