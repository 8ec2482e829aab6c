-- Every sink reads every record of its topic in its own consumer group, so two sinks may both refuse one record
-- (a record that does not decode is refused by the PostgreSQL and the Redis sink alike). Keyed by source position
-- alone, the second letter was silently dropped; keyed by position and processor, each sink keeps its own reason,
-- and a sink archiving the same record again (a batch retried after an outage) is still a no-op.
ALTER TABLE streamhealth.dead_letters DROP CONSTRAINT IF EXISTS dead_letters_pkey;
ALTER TABLE streamhealth.dead_letters ADD PRIMARY KEY (source_topic, source_partition, source_offset, processor);
