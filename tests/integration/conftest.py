"""Tier 2: the job's `build()` on a PyFlink MiniCluster, with a collection source.

PyFlink starts its JVM on first use, with the classpath of FLINK_LIB_DIR; we point
it at PyFlink's lib/ plus our Maven-resolved jars before any test touches PyFlink.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.config import load_config


@pytest.fixture(scope="session", autouse=True)
def flink_classpath(tmp_path_factory: pytest.TempPathFactory) -> None:
    from connectors.stack.flink import assemble_flink_lib, pyflink_home

    state = tmp_path_factory.mktemp("flink-state")
    config = load_config({"state_dir": str(state)}, env={})
    lib = assemble_flink_lib(config)
    # FLINK_HOME must be set too, or PyFlink resets FLINK_LIB_DIR to its own lib/.
    os.environ["FLINK_HOME"] = str(pyflink_home())
    os.environ["FLINK_LIB_DIR"] = str(lib)
