"""Reviewing catalog completion: `mjave review` (a browser page over a SQLite database of
decisions) and `mjave review export` (the accepted values as a catalog table and as labelled
training data). See docs/review.md.

`db.ReviewDB` is the database (WAL mode, decision history, leases), `inputs` reads and checks
the suggestions/conflicts CSV files and the products, `export` writes the results, `app` is the
FastAPI service (the [serve] extra); the command is `mjave.cli.review`. Importing this package imports
neither FastAPI nor torch.
"""
