"""The one torch-threads convention: one per core unless told, shared by processes, 0 refused."""

import os

import pytest
import torch

from course_utils import ablation, designs, findings, train
from course_utils.threads import set_torch_threads


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_one_thread_per_core_unless_told(restore_threads):
    cores = os.cpu_count() or 1
    assert set_torch_threads(1) == 1 and torch.get_num_threads() == 1
    assert set_torch_threads() == cores and torch.get_num_threads() == cores
    assert set_torch_threads(processes=cores) == 1
    assert set_torch_threads(processes=4 * cores) == 1  # never fewer than one
    with pytest.raises(ValueError, match="threads must be at least 1 \\(or None for one per core\\), got 0"):
        set_torch_threads(0)


@pytest.mark.parametrize("tool", [ablation, designs, findings, train], ids=lambda tool: tool.__name__)
@pytest.mark.parametrize("value, message", [("0", "must be at least 1, got 0"), ("two", "must be a whole number")])
def test_every_command_refuses_a_bad_threads_option_before_any_work(tool, value, message, capsys):
    with pytest.raises(SystemExit) as exited:
        tool.main(["--threads", value])
    assert exited.value.code == 2
    assert f"argument --threads: {message}" in capsys.readouterr().err
