"""``ddb2bq package``: the zip is reproducible, holds what Lambda needs and nothing the runtime
has, and its handler imports in a Python that sees only the zip and boto3."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

from ddb2bq.convert import COMPILED
from ddb2bq.deploy.package import build_package
from tests.integration.aws_lambda.conftest import BuiltZip

ISOLATED = [sys.executable, "-I", "-S"]  # no site-packages, no PYTHON* variables, no user site


def run_isolated(code: str, *path: Path) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a Python whose only non-stdlib path entries are ``path``."""
    prelude = f"import sys; sys.path[:0] = {[str(p) for p in path]!r}\n"
    return subprocess.run(
        [*ISOLATED, "-c", prelude + code], capture_output=True, text=True, timeout=120, check=False
    )


def test_two_builds_are_byte_identical(lambda_zip: BuiltZip, tmp_path: Path) -> None:
    # GIVEN the session's zip  WHEN the same sources are packaged again
    again = build_package(replace(lambda_zip.spec, out=tmp_path / "again.zip"))
    # THEN the two files are the same bytes
    assert again.path.read_bytes() == lambda_zip.result.path.read_bytes()


def test_entries_are_sorted_with_fixed_times_and_modes(lambda_zip: BuiltZip) -> None:
    with zipfile.ZipFile(lambda_zip.result.path) as archive:
        infos = archive.infolist()
    names = [i.filename for i in infos]
    assert names == sorted(names)
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    modes = {oct(i.external_attr >> 16) for i in infos}
    assert modes == {"0o100644", "0o40755"}


def test_the_zip_holds_the_dependencies_and_not_what_the_runtime_has(lambda_zip: BuiltZip) -> None:
    with zipfile.ZipFile(lambda_zip.result.path) as archive:
        tops = {name.split("/")[0] for name in archive.namelist()}
        names = set(archive.namelist())
    for provided in (
        "boto3",
        "botocore",
        "s3transfer",
        "jmespath",
        "dateutil",
        "urllib3",
        "six.py",
    ):
        assert provided not in tops
    assert "bin" not in tops
    for needed in ("ddb2bq", "google", "grpc", "orjson", "proto", "requests"):
        assert needed in tops
    assert "ddb2bq/aws_lambda.py" in names
    assert "ddb2bq/py.typed" in names
    # the wheels are Linux x86_64 builds for the test's Python
    assert any(n.startswith("orjson/orjson.cpython-") and "x86_64-linux" in n for n in names)
    # .pyc compiled for the target Python, so a read-only /var/task compiles nothing
    tag = f"cpython-{sys.version_info[0]}{sys.version_info[1]}"
    assert f"ddb2bq/__pycache__/aws_lambda.{tag}.pyc" in names
    print(f"zip: {lambda_zip.result.size_bytes} bytes, {lambda_zip.result.files} files")


def test_the_handler_imports_from_the_zip_alone(lambda_zip: BuiltZip, lambda_runtime: Path) -> None:
    # GIVEN a Python that sees only the unpacked zip and a folder with boto3 (the runtime's)
    code = (
        "import ddb2bq.aws_lambda as f, google.cloud.bigquery as bq, "
        "google.cloud.bigquery_storage_v1 as s, boto3\n"
        "print(f.__file__); print(bq.__file__); print(boto3.__file__)\n"
        "print(callable(f.handler))"
    )
    # WHEN the handler and the Google clients are imported
    found = run_isolated(code, lambda_zip.unpacked, lambda_runtime)
    # THEN everything comes from the zip, boto3 from the runtime folder
    assert found.returncode == 0, found.stderr
    handler_file, bigquery_file, boto3_file, is_callable = found.stdout.split()
    assert handler_file.startswith(str(lambda_zip.unpacked))
    assert bigquery_file.startswith(str(lambda_zip.unpacked))
    assert boto3_file.startswith(str(lambda_runtime))
    assert is_callable == "True"


def test_the_zip_converts_with_the_build_that_packaged_it(
    lambda_zip: BuiltZip, lambda_runtime: Path
) -> None:
    # GIVEN the session's zip, packaged by the ddb2bq this run imports (scripts/test runs these
    # tests once on the editable pure-Python install and once on the compiled build)
    # WHEN a Python that sees only the zip and boto3 imports the function's converter
    found = run_isolated(
        "import ddb2bq.aws_lambda, ddb2bq.convert as c, ddb2bq.numeric as n\n"
        "print(c.COMPILED, c.__file__, n.__file__)",
        lambda_zip.unpacked,
        lambda_runtime,
    )
    # THEN it is the compiled converter exactly when the packaging ddb2bq was compiled
    assert found.returncode == 0, found.stderr
    compiled, convert_file, numeric_file = found.stdout.split()
    assert compiled == str(COMPILED)
    assert lambda_zip.result.converter.compiled is COMPILED
    suffix = "-x86_64-linux-gnu.so" if COMPILED else ".py"
    assert convert_file.startswith(str(lambda_zip.unpacked))
    assert convert_file.endswith(suffix)
    assert numeric_file.endswith(suffix)


def test_without_the_zip_nothing_is_importable(lambda_runtime: Path) -> None:
    # The isolation is real: the dev virtualenv is not on the path.
    found = run_isolated("import ddb2bq", lambda_runtime)
    assert found.returncode != 0
    assert "No module named 'ddb2bq'" in found.stderr
