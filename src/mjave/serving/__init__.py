"""HTTP serving of a trained model: `mjave serve MODEL` (FastAPI + uvicorn, the [serve] extra).

`app.create_app` builds the service (its routes), `schemas` holds the request and answer bodies,
`batcher.MicroBatcher` groups concurrent requests into model batches, `config` holds the limits
and the loopback rule; the command is `mjave.cli.serve`. `errors` (the error answers), `limits`
(the body cap), `images` (client images) and `docs` (offline API pages) are shared on purpose
with `mjave review`.
Importing this package does not import FastAPI.
"""
