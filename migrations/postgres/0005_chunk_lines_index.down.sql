DROP INDEX chunks_file_lines_idx;
