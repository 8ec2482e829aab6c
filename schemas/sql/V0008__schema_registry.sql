-- The embedded schema registry (processors/Runtime/SchemaRegistry): the part of Confluent Schema Registry's store that
-- the Avro serializers need, kept in PostgreSQL so ids survive restarts and several processes share one registry.
-- Production uses Confluent Schema Registry itself; this schema is used only where the embedded stand-in runs.
-- Registration takes a transaction-level advisory lock (SchemaRegistryStore), so ids and versions are handed out one at
-- a time with no gaps; the unique keys below hold even if a writer forgot the lock.
CREATE SCHEMA IF NOT EXISTS registry;

-- One row per distinct schema, whatever subjects it is registered under: the global id the wire format carries.
CREATE TABLE IF NOT EXISTS registry.schemas (
  id          int         PRIMARY KEY CHECK (id > 0),
  schema_type text        NOT NULL DEFAULT 'AVRO' CHECK (schema_type = 'AVRO'),
  canonical   text        NOT NULL,   -- Apache.Avro's JSON form of the parsed schema: whitespace and key order do not count
  sha256      bytea       NOT NULL,   -- of canonical (UTF-8); a unique index on the text itself would fail past ~2.7 kB
  created_at  timestamptz NOT NULL DEFAULT now(),
  UNIQUE (schema_type, sha256)
);

-- The versions of each subject (Confluent: <topic>-value, <topic>-key, ...), 1, 2, 3, ... in registration order.
CREATE TABLE IF NOT EXISTS registry.subject_versions (
  subject       text        NOT NULL,
  version       int         NOT NULL CHECK (version > 0),
  schema_id     int         NOT NULL REFERENCES registry.schemas (id),
  registered_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (subject, version),
  UNIQUE (subject, schema_id)          -- a schema is registered under a subject once; again answers its version
);
CREATE INDEX IF NOT EXISTS subject_versions_schema_id ON registry.subject_versions (schema_id);

-- Compatibility levels: subject '' is the global level (BACKWARD when absent, as Confluent's default); any other row
-- overrides it for that subject.
CREATE TABLE IF NOT EXISTS registry.config (
  subject       text        PRIMARY KEY,
  compatibility text        NOT NULL CHECK (compatibility IN ('NONE', 'BACKWARD', 'BACKWARD_TRANSITIVE', 'FORWARD',
                                                              'FORWARD_TRANSITIVE', 'FULL', 'FULL_TRANSITIVE')),
  updated_at    timestamptz NOT NULL DEFAULT now()
);
