"""Platform code shared by every Shop service: settings, database, errors, auth, logs, metrics."""
