"""HTTP serving of a trained model: `mjave serve MODEL` (FastAPI + uvicorn, the [serve] extra).

`app.create_app` builds the service, `batcher.MicroBatcher` groups concurrent requests into model
batches, `config` holds the limits and the loopback rule; the command is `mjave.cli.serve`.
Importing this package does not import FastAPI.
"""
