"""``ddb2bq package`` carries the compiled converter exactly when the ddb2bq being packaged is a
compiled install built for the target (Python, machine, glibc), and says why not otherwise.

These tests run in both of ``scripts/test``'s unit passes: on the editable, pure-Python install
the package is pure; on the compiled build (its site first on the path) it carries the compiled
modules for this machine and Python. pip is not run: the zip holds ddb2bq alone, which is what
these tests are about (the integration tests build whole packages)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

import orjson
import pytest

from ddb2bq.cli.main import main
from ddb2bq.convert import COMPILED, lean_item
from ddb2bq.deploy.package import (
    PackageError,
    PackageResult,
    PackageSpec,
    build_package,
    find_compiled,
)
from tests.unit.test_compiled_build import IMAGE

PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"
TAG = f"cpython-{sys.version_info[0]}{sys.version_info[1]}"


def no_pip(command: Sequence[str]) -> None:
    """Stands for pip (and compileall): the zip then holds ddb2bq's own files only."""


def package(tmp_path: Path, arch: str = "x86_64", converter: str = "auto") -> PackageResult:
    spec = PackageSpec(arch, PYTHON, tmp_path / "f.zip", compile=False, converter=converter)
    return build_package(spec, requirements=[], runner=no_pip)


def extensions_in(zip_path: Path) -> set[str]:
    with zipfile.ZipFile(zip_path) as archive:
        return {name for name in archive.namelist() if name.endswith(".so")}


def test_the_package_carries_the_compiled_converter_exactly_when_this_install_has_one(
    tmp_path: Path,
) -> None:
    # GIVEN the ddb2bq this run imports (compiled in the compiled pass, else pure Python)
    # WHEN it is packaged for this machine and Python with the default converter (auto)
    result = package(tmp_path)
    # THEN the zip carries the compiled modules exactly when this install is compiled
    assert result.converter.compiled is COMPILED
    assert extensions_in(result.path) == set(result.converter.files)
    if COMPILED:
        assert {f"ddb2bq/convert.{TAG}-x86_64-linux-gnu.so"} <= extensions_in(result.path)
    else:
        assert "is not an installed wheel" in result.converter.why_pure
    # AND a Python that sees only the unpacked zip (and orjson) loads that build from it and
    # converts an item exactly as this process does
    unpacked = tmp_path / "task"
    with zipfile.ZipFile(result.path) as archive:
        archive.extractall(unpacked)
    code = (
        "import json, sys\n"
        f"sys.path[:0] = [{str(unpacked)!r}, {str(Path(orjson.__file__).parents[1])!r}]\n"
        "import ddb2bq.convert as c\n"
        f"item, types = c.lean_item(json.loads({json.dumps(IMAGE)!r}))\n"
        "print(json.dumps([c.COMPILED, c.__file__, item, types]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    compiled, origin, item, types = json.loads(done.stdout)
    assert compiled is COMPILED
    assert origin.startswith(str(unpacked))
    expected_item, expected_types = lean_item(IMAGE)
    assert (item, types) == (json.loads(orjson.dumps(expected_item)), expected_types)


def test_pure_leaves_the_compiled_modules_out_of_any_install(tmp_path: Path) -> None:
    # WHEN this install is packaged with --converter pure
    result = package(tmp_path, converter="pure")
    # THEN no extension module of ddb2bq is in the zip, and the source of each one is
    assert extensions_in(result.path) == set()
    assert result.converter.why_pure == "asked for (--converter pure)"
    with zipfile.ZipFile(result.path) as archive:
        assert {"ddb2bq/convert.py", "ddb2bq/numeric.py"} <= set(archive.namelist())


def test_compiled_for_a_target_this_install_was_not_built_for_is_refused_by_name(
    tmp_path: Path,
) -> None:
    # GIVEN this install (pure, or compiled for x86_64)
    # WHEN the compiled converter is asked for on arm64 (aarch64)
    with pytest.raises(PackageError) as refused:
        package(tmp_path, arch="arm64", converter="compiled")
    # THEN the refusal says why and what to do, and no zip is written
    message = str(refused.value)
    assert message.startswith("--converter compiled: ")
    assert message.endswith(
        "Package with --converter auto or pure for the pure-Python "
        "converter (the same values, converted slower)."
    )
    if COMPILED:
        assert f"are for Python {PYTHON} on x86_64, not Python {PYTHON} on aarch64" in message
    else:
        assert "is not an installed wheel" in message
    assert not (tmp_path / "f.zip").exists()


def test_the_cli_refuses_compiled_in_one_line_before_pip_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # WHEN `ddb2bq package --converter compiled` is asked for a target no install here fits
    out = tmp_path / "f.zip"
    code = main(["package", "--arch", "arm64", "--converter", "compiled", "--out", str(out)])
    captured = capsys.readouterr()
    # THEN one line names the option and the reason, exit 1, nothing built
    assert code == 1
    assert captured.out == ""
    assert captured.err.startswith("ddb2bq: error: --converter compiled: ")
    assert captured.err.count("\n") == 1
    assert "Traceback" not in captured.err
    assert not out.exists()


def fake_install(site: Path, files: dict[str, bytes], listed: Sequence[str] | None = None) -> Path:
    """A site folder with a ddb2bq package, the given files, and a RECORD listing them."""
    (site / "ddb2bq").mkdir(parents=True)
    (site / "ddb2bq" / "convert.py").write_text("# source\n")
    for name, data in files.items():
        (site / name).write_bytes(data)
    info = site / "ddb2bq-0.1.0.dist-info"
    info.mkdir()
    names = ["ddb2bq/convert.py", *(files if listed is None else listed)]
    (info / "RECORD").write_text("".join(f"{name},sha256=x,1\n" for name in names))
    return site / "ddb2bq"


def test_compiled_modules_that_fit_the_target_are_all_taken(tmp_path: Path) -> None:
    # GIVEN an install compiled for Python 3.12 on aarch64 that needs glibc 2.28 (< 2.34)
    source = fake_install(
        tmp_path,
        {
            "ddb2bq/convert.cpython-312-aarch64-linux-gnu.so": b"\0GLIBC_2.17\0GLIBC_2.28\0",
            "ddb2bq__mypyc.cpython-312-aarch64-linux-gnu.so": b"\0GLIBC_2.17\0",
        },
    )
    # WHEN it is looked at for Lambda's python3.12 on arm64
    found = find_compiled(source, "arm64", "3.12")
    # THEN both extension modules are taken, by their paths in the install
    assert found.files == (
        "ddb2bq/convert.cpython-312-aarch64-linux-gnu.so",
        "ddb2bq__mypyc.cpython-312-aarch64-linux-gnu.so",
    )
    assert found.why_pure == ""


@pytest.mark.parametrize(
    ("python", "arch", "files", "why"),
    [
        (
            "3.11",
            "x86_64",
            {"ddb2bq/convert.cpython-311-x86_64-linux-gnu.so": b"\0GLIBC_2.28\0"},
            "needs glibc 2.28, newer than the 2.26 of Lambda's python3.11 runtime: build "
            "ddb2bq on an older Linux",
        ),
        (
            "3.13",
            "x86_64",
            {"ddb2bq/convert.cpython-312-x86_64-linux-gnu.so": b"\0GLIBC_2.14\0"},
            "are for Python 3.12 on x86_64, not Python 3.13 on x86_64: package on x86_64 Linux "
            "with a ddb2bq installed for Python 3.13",
        ),
        ("3.12", "x86_64", {}, "is pure Python (an editable install, PURE_DDB2BQ=1"),
    ],
    ids=["glibc-too-new", "other-python", "pure-wheel"],
)
def test_compiled_modules_that_do_not_fit_leave_the_package_pure_and_say_why(
    tmp_path: Path, python: str, arch: str, files: dict[str, bytes], why: str
) -> None:
    # GIVEN an install whose compiled modules (if any) do not fit the target
    source = fake_install(tmp_path, files)
    # WHEN it is looked at for that target
    found = find_compiled(source, arch, python)
    # THEN nothing is taken and the reason names the fact and what to do
    assert found.files == ()
    assert why in found.why_pure


def test_a_compiled_module_its_record_lists_but_is_gone_leaves_the_package_pure(
    tmp_path: Path,
) -> None:
    # GIVEN an install whose RECORD lists a compiled module that is not on disk
    name = f"ddb2bq/convert.{TAG}-x86_64-linux-gnu.so"
    source = fake_install(tmp_path, {}, listed=[name])
    # WHEN it is looked at
    found = find_compiled(source, "x86_64", PYTHON)
    # THEN it is pure, naming the missing file and the RECORD
    assert found.files == ()
    assert found.why_pure == (
        f"{tmp_path / name}, listed by {tmp_path / 'ddb2bq-0.1.0.dist-info' / 'RECORD'}, is missing"
    )
