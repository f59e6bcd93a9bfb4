//! The engine against real PgQ: ticking, retry, maintenance, discovery, recovery.
