"""The one `--format` option (and `--from` / `--to`): every command lists the same format names,
taken from the format registry, so a format added there is offered everywhere at once."""

from __future__ import annotations

import argparse

from mjave.data.formats import format_aliases, format_names


def format_choices() -> list[str]:
    """Every registered format name, then the aliases (`tsv`, `mepave`)."""
    return [*format_names(), *format_aliases()]


def formats_help() -> str:
    """`jsonl, jave (also tsv, mepave), conll, csv, parquet`, saying which carry spans."""
    aliases: dict[str, list[str]] = {}
    for alias, name in format_aliases().items():
        aliases.setdefault(name, []).append(alias)
    names = [f"{n} (also {', '.join(aliases[n])})" if n in aliases else n
             for n in format_names()]
    return (f"{', '.join(names)}; spans only in {', '.join(format_names(has_spans=True))}; "
            "default: from the extension")


def add_format_option(p: argparse.ArgumentParser | argparse._ArgumentGroup,
                      *flags: str, dest: str | None = None, what: str = "input") -> None:
    """Add `--format` (or the given flags) choosing among every registered format."""
    kwargs = {"dest": dest} if dest else {}
    p.add_argument(*(flags or ("--format",)), choices=format_choices(), metavar="FORMAT",
                   help=f"{what} format: {formats_help()}", **kwargs)


__all__ = ["add_format_option", "format_choices", "formats_help"]
