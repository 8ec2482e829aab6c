-- calllogs.raw changed what it carries (issue 17): it was declared as CallLog (the call with its transcript) before anything
-- wrote it, and now holds CallCompleted (the signed webhook's ids); CallLog moved to calllogs.calls. The two records cannot
-- read each other, so a registry that already has the old subject refuses the new schema. In the embedded stand-in
-- registry (this database's `registry` schema, used by the local stack) the old, never-written versions are removed here,
-- so an existing local stack comes up; Confluent Schema Registry in production is cleared as the README says.
DELETE FROM registry.subject_versions v
USING registry.schemas s
WHERE v.subject = 'calllogs.raw-value' AND v.schema_id = s.id AND s.canonical NOT LIKE '%"CallCompleted"%';
