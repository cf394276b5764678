"""PostgreSQL: engine, models of schema `krs`, advisory locks, embedded server, migrations."""
