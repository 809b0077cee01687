"""Fixtures shared by the test files."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def one_thread():
    """One intra-op torch thread for the duration of a test.

    Tiny models gain nothing from threads, and on a small busy CPU spin-waiting threads made
    them 3-40x slower.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
