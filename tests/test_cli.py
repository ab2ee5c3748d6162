"""The command line explains itself: ``--help`` of every command says what each of its options is."""

from __future__ import annotations

import argparse

import pytest

from simpsons_classifier.cli import build_parser, main


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


@pytest.mark.parametrize("command", [["predict", "--run", "{run}", "image.png"], ["evaluate", "--run", "{run}"],
                                     ["report", "--run", "{run}"], ["explain", "--run", "{run}"],
                                     ["export", "--run", "{run}"], ["serve", "--run", "{run}"],
                                     ["discover", "--run", "{run}", "--images", "."], ["compare", "{run}"]])
def test_a_folder_without_a_model_is_refused_before_anything_loads_saying_what_to_run(command, tmp_path, capsys):
    empty, missing = tmp_path / "empty", tmp_path / "missing"
    empty.mkdir()
    for run, reason in ((empty, f"{empty} holds no trained model (best.pt is missing): train one with  simpsons "
                                f"train --data DIR --out {empty}"), (missing, f"{missing} is not a folder")):
        assert main([part.format(run=run) for part in command]) == 2
        assert reason in capsys.readouterr().err
