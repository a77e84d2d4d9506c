"""The test suite: real PostgreSQL and Valkey, fakes only for outside services."""
