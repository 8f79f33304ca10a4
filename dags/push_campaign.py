"""
### push_campaign

Send one buzz campaign to loyalty passes in Apple Wallet and Google Wallet through PassKit.

For marketing admins (through the trigger form or the campaign page) and for scheduled
win-back campaigns. One DAG run is one campaign, recorded in `push_campaigns` with a row per
recipient in `push_campaign_recipients`:

1. `create_campaign` validates the form and creates the campaign row;
2. `resolve_audience` resolves who, renders every message and applies suppression, in SQL;
3. `confirmation_gate`: no run buzzes phones without a confirmed count. With `confirm_recipients`
   (the campaign page) or `max_recipients` (schedules) the run goes on only if the audience is not
   larger; otherwise `approve_send` asks a person in Airflow's Required Actions ("This will buzz X
   phones..."); Reject, or no answer within 24 h, cancels the campaign;
   `plan_batches` then checks PassKit's credentials and lists the batches;
4. `send_batch` (mapped, pool `passkit_api`) sends a batch under a global request-rate limit;
5. `reconcile` (always runs) retries what is left once and writes the final counts and status.

A dry run stops after step 3 and leaves a preview on the campaign. Connections: `loyalty_db`
(Postgres) and `passkit_default` (PassKit: host = base URL, login = API key, password = secret).
"""

from __future__ import annotations

from passpush.campaign_dag import build_campaign_dag, form_params

dag = build_campaign_dag("push_campaign", doc_md=__doc__, params=form_params(),
                         description="Send one buzz campaign to loyalty passes through PassKit.")
