"""The team setup of docs/scaling.md on one machine: a one-node SLURM cluster, an S3 server,
PostgreSQL and the MLflow tracking server on them, each started and stopped by its PID.

Used by the slow team tests (their fixtures) and by ``make team-stack`` (``__main__``), so a
user tries what the tests run. Only the standard library, psutil and (for S3) boto3.
"""
