"""sorsync: a PostgreSQL replica of SOR from NSP's KopiRegisterService, and lookups on it."""

__version__ = "0.1.0"
