-- The Prefect server's database and the operational state (level 3's deployments and
-- prediction log, level 4's loop), beside MLflow's (POSTGRES_DB); run once, on a new volume.
CREATE DATABASE prefect;
CREATE DATABASE state;
