-- The Prefect server's database, beside MLflow's (POSTGRES_DB); run once, on a new volume.
CREATE DATABASE prefect;
