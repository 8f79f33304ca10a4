"""The campaign page: launch, confirm, follow and review push campaigns from inside Airflow's UI.

A FastAPI app served by the Airflow API server (registered by ``plugins/passpush_campaigns.py``)
under ``/passpush``, and shown in Airflow's navigation as "Push campaigns":

    settings.py   names shared by the app and the plugin (URL prefix, DAG ids, upload folder)
    auth.py       Airflow's own authentication and DAG permissions as FastAPI dependencies
    forms.py      the page's form -> the ``push_campaign`` conf, validated by ``parse_conf``
    preview.py    the audience count: the DAG's own dry-run code on a throw-away campaign row
    uploads.py    member-id CSVs stored under the upload folder with generated names
    launch.py     triggers ``push_campaign`` through Airflow, as the signed-in user
    history.py    past and running campaigns, and one campaign's detail, from the loyalty DB
    airflow_runs.py  the DAG runs behind them, from Airflow's metadata DB
    api.py        the JSON routes; app.py builds the app; static/ is the page itself

Nothing here is imported when DAGs are parsed.
"""
