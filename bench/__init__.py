"""``make bench``: how close passpush comes to PassKit's rate limit, and how far its audience scales.

Run ``python -m bench.run`` (``--quick`` for smaller sizes, ``--help`` for the rest). Every scenario
of issue 6 runs in one go against a scratch PostgreSQL database and local PassKit emulators, and
the run ends with one table (figure, target, measured, ratio) printed and written as JSON to
``bench/out/results.json``; a full run also refreshes the latest table in ``bench/RESULTS.md``.

Layout:

- ``config``: sizes (full, quick, smoke) and the targets of the issue;
- ``stack``: scratch database, emulators, child processes measured with ``wait4`` (time, CPU, peak RSS);
- ``steps``: the work done inside child processes (seeding, resolving, planning, sending, baseline);
- ``dagrun``: ``airflow dags test`` runs, or the same task functions in-process;
- ``delivery``, ``engine``, ``audience_scale``, ``baseline``: the scenarios;
- ``report``: figures, the table, JSON and ``RESULTS.md``.

Timing lives here and nowhere else: the smoke test only checks that the machinery runs.
"""
