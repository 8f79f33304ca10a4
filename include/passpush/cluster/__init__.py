"""passpush on Airflow's CeleryExecutor: a local cluster of real processes, and deployment set-up.

    python -m passpush.cluster up | down | status     (make cluster-up, make cluster-down)
    python -m passpush.cluster provision              (docker-compose's airflow-init)

Modules: ``config`` (what the cluster is), ``preflight`` (PostgreSQL, Redis, ports), ``provision``
(databases, migrations, pool, connections), ``processes`` (pid files, logs, process trees),
``stack`` (the ``Cluster``: start order and readiness), ``api`` (REST client, logged in as the UI is),
``hostname`` (the ``hostname_callable`` that tells two workers on one machine apart).

Nothing is imported here: ``hostname`` is loaded by every task process and must stay cheap.
"""
