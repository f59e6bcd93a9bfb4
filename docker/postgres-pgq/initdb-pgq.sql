-- Run once, when the container initializes a new cluster, in POSTGRES_DB.
CREATE EXTENSION IF NOT EXISTS pgq;
