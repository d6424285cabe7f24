"""The Label Studio-facing service: HTTP endpoints, the Label Studio client and the
background loop that turns annotations into an active-learning order.

Modules, one concept each:
    settings      the frozen ``Settings`` read once from the environment and flags
    label_config  which label configs we learn from (one <Choices> over <Image>/<Text>)
    task_data     reading a task's content (URLs, Label Studio paths, data: URIs, text)
    ls_client     the few Label Studio REST calls (legacy token or PAT), incremental sync
    store         per-project state under MODEL_DIR/<project_id>/, atomic writes
    loop          one round: sync -> embed -> PoolState -> run_round -> push -> persist
    worker        one background thread; events for a busy project coalesce into one round
    service       the behaviour behind the routes, free of Flask
    app           the Flask app factory ``create_app(settings)``

Routes: GET / and /health, POST /setup, /predict, /webhook, /train, GET /metrics,
/versions and /projects/<id>/history (why each top task is first).

The ML core (``model/``) never imports from here; this package adapts Label Studio's
protocol to it.
"""
