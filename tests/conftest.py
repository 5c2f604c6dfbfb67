"""Shared fixtures.

Every test sees a machine without the optional EfficientNet-Lite0 package, so that
``encoder_init: auto`` trains CAVGA-D from scratch as the tests were written for, whatever is
installed (session scope, so that module-scoped runs see it too). A teacher given as a file
(``distill.teacher_weights``, the ``teacher_file`` fixture) is still found; test_resolve.py sets
the package's presence itself."""

import pytest
import torch

import cavga.config.resolve as resolve
from cavga.backbones import EfficientNetLite0


@pytest.fixture(scope="session", autouse=True)
def _no_pretrained_package():
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(resolve, "TEACHER_PACKAGE", "cavga_tests_no_such_package")
        yield


@pytest.fixture(scope="session")
def teacher_file(tmp_path_factory):
    """A random Lite0 as a state-dict file: the teacher without the optional package."""
    torch.manual_seed(5)
    path = tmp_path_factory.mktemp("teacher") / "lite0.pth"
    torch.save(EfficientNetLite0().state_dict(), path)
    return path
