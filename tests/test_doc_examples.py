"""The docstring examples of the sampling and stop-string modules run as written."""
from __future__ import annotations

import doctest

import pytest

import llamalite.sampling
import llamalite.stopping


@pytest.mark.parametrize("module", [llamalite.sampling, llamalite.stopping])
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
