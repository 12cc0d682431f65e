"""bench.jvm_profile: the share of async-profiler's samples per frame of interest."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.jvm_profile import native_library, shares


def test_shares_count_each_stack_once_per_frame_across_files(tmp_path: Path) -> None:
    a = tmp_path / "a.collapsed"
    b = tmp_path / "b.collapsed"
    a.write_text(
        "[Deduplicate[7] (1/2)#0 tid=9];java/lang/Thread.run;x/ProcTimeDeduplicateKeepFirstRowFunction.processElement;"
        "y/RocksDBValueState.value 30\n"
        "[C2 CompilerThread0 tid=7];start_thread;CompileBroker::compiler_thread_loop;C2Compiler::compile_method 50\n"
    )
    b.write_text(
        "java/lang/Thread.run;pemja/core/object/PyIterator.next;_PyEval_EvalFrameDefault;gc_collect_main 20\n"
        "not a sample line\n"
    )
    got = shares([a, b, tmp_path / "missing.collapsed"])
    assert got["Deduplicate"] == 30.0
    assert got["RocksDB (JNI)"] == 30.0
    assert got["JIT compiler"] == 50.0
    assert got["pemja (Python operators and function)"] == 20.0
    assert got["Python GC"] == 20.0
    assert got["TrendRows"] == 0.0


def test_no_samples_no_shares(tmp_path: Path) -> None:
    assert shares([tmp_path / "missing.collapsed"]) == {}


def test_native_library_needs_the_jar(tmp_path: Path, monkeypatch) -> None:
    import bench.jvm_profile as jvm_profile

    monkeypatch.setattr(jvm_profile, "JARS", tmp_path / "none")
    with pytest.raises(FileNotFoundError, match="make profiler"):
        native_library(tmp_path / "lib")
