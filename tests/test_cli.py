"""The command line explains itself: ``--help`` of every command says what each of its options is."""

from __future__ import annotations

import argparse

from simpsons_classifier.cli import build_parser


def commands(parser: argparse.ArgumentParser, name: str = "simpsons"):
    """(name, parser) of ``parser`` and of every sub-command below it."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub_parser in action.choices.items():
                yield from commands(sub_parser, f"{name} {sub_name}")


def test_every_option_of_every_command_has_help():
    found = list(commands(build_parser()))
    assert len(found) > 15  # every sub-command, and detect's and data's own
    silent = [f"{name} {action.option_strings[-1] if action.option_strings else action.dest}"
              for name, parser in found for action in parser._actions
              if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)) and not action.help]
    assert not silent, f"options without help: {silent}"
