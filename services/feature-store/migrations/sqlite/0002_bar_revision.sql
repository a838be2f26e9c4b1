-- The revision ingestion assigned to each bar (0 = first version, n = n-th correction): an
-- event with a lower revision than the stored one is ignored, never applied.
ALTER TABLE bars ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
