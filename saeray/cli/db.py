"""``saeray db upgrade | current``: bring the database schema to head, or show where it is."""

from __future__ import annotations

import argparse

from saeray.db.engine import open_engine
from saeray.db.migrate import current_revision, head_revision, upgrade
from saeray.settings import get_settings


def _upgrade(args: argparse.Namespace) -> int:
    before, after = upgrade(args.url)
    if before == after:
        print(f"database already at head ({after})")
    else:
        print(f"database upgraded from {before or 'empty'} to {after}")
    return 0


def _current(args: argparse.Namespace) -> int:
    current = current_revision(open_engine(args.url))
    head = head_revision()
    state = "at head" if current == head else "behind: run `saeray db upgrade`"
    print(f"revision {current or 'none'} (head {head}); {state}")
    return 0 if current == head else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    db = subparsers.add_parser("db", help="database schema migrations")
    actions = db.add_subparsers(dest="action", required=True)
    for name, handler, help_text in (
        ("upgrade", _upgrade, "bring the database to the newest schema (idempotent)"),
        ("current", _current, "show the database's schema revision"),
    ):
        action = actions.add_parser(name, help=help_text)
        action.add_argument(
            "--url", default=None, help=f"database URL (default {get_settings().database_url})"
        )
        action.set_defaults(func=handler)
