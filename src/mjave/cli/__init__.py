"""The `mjave` command line: `entry` is the one entry point (parsing, dispatch, error lines),
`console` what every command shares (progress bar, logging, messages), and one parse-only module
per command group (data, train, evaluate, demo, predict, serve, complete, review, experiment)
whose commands call one library function each and print its result."""

from mjave.cli.entry import build_parser, main

__all__ = ["build_parser", "main"]
