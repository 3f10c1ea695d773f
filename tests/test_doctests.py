"""The examples in the docstrings of the small pure functions a newcomer reads first."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "streams.core.state_rules",  # the state update, stored-state formats
    "streams.core.debounce",  # the debouncer
    "streams.core.held_users",  # users owed a list until the scorer is ready
    "streams.core.list_message",  # which event a list names
    "inference.rerank",  # MMR selection, the long-tail quota
    "schemas.topics",  # the partition rule
    "schemas.event_weights",  # the taste weight of one event
    "schemas.bulk_decode",  # a batch decoded as each value alone
    "training.export",  # bundle versions sort by creation time
    "streams.core.sync_policy",  # when a live timer reads again
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_hold(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0
