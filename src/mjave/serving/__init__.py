"""HTTP serving of a trained model: `mjave serve MODEL` (FastAPI + uvicorn, the [serve] extra).

`app.create_app` builds the service, `batcher.MicroBatcher` groups concurrent requests into model
batches, `cli.add_serve_command` registers the command. Importing this package does not import
FastAPI.
"""
