"""Plain SQL migrations, NNNN_name.sql, applied in order by runtime.migrate; append-only."""
