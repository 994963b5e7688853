"""``ddb2bq package``: the Lambda deployment zip, reproducible, for one architecture and Python.

The zip holds ddb2bq and its runtime dependencies as wheels built for the Lambda platform
(``pip install --platform manylinux2014_<arch> --implementation cp --python-version X.Y
--only-binary=:all: --target``), without what the Lambda Python runtime already provides: boto3
and its dependencies (:data:`RUNTIME_PROVIDED`). Console scripts (``bin/``) and ``__pycache__``
folders compiled for the build machine's Python are left out.

When an interpreter of the target Python version is at hand (the one running this, or
``pythonX.Y`` on PATH), every module is compiled to ``.pyc`` in ``unchecked-hash`` mode: Lambda's
``/var/task`` is read-only, so without them every cold start compiles every imported module
again. Hash-based ``.pyc`` files carry no timestamps, so the zip stays reproducible.

The converter (``ddb2bq.convert`` and ``ddb2bq.numeric``) goes in compiled when it can
(``converter="auto"``, :func:`find_compiled`): when the ddb2bq being packaged is a compiled
install (a wheel built by ``setup.py``'s mypyc step, not an editable or ``PURE_DDB2BQ=1`` one)
whose modules were built for the target's Python and machine and need no newer glibc than the
Lambda runtime has. Otherwise the package is pure Python, which converts the same values the same
way, slower; the result says why. The compiled files are then what an installer wrote: their
bytes are copied as they are, so the zip is reproducible for one install.

Reproducible: entries sorted, every timestamp 1980-01-01 00:00, permissions fixed (0644 files,
0755 folders), the same compression; two builds from the same inputs are byte-identical. Pin the
dependency versions (``constraints``) to make builds on different days identical too.

Example::

    result = build_package(PackageSpec(arch="arm64", python="3.12", out=Path("dist/f.zip")))
    print(result.size_bytes)
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ddb2bq.exceptions import Ddb2bqError

ARCHITECTURES = {"x86_64": "x86_64", "arm64": "aarch64"}
PYTHONS = ("3.11", "3.12", "3.13")
DEFAULT_OUT = Path("dist/ddb2bq-lambda.zip")
RUNTIME_PROVIDED = frozenset(
    ("boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3")
)
"""Distributions every Lambda Python runtime has (boto3 and what it depends on): left out."""

ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o644
DIR_MODE = 0o755
_PACKAGE_SUFFIXES = (".py", ".typed")
_SKIP_DIRS = frozenset(("__pycache__",))
_GLIBC_2_28_FROM = (3, 12)  # Lambda's Python 3.12+ runs on Amazon Linux 2023 (glibc 2.34)
CONVERTERS = ("auto", "compiled", "pure")
_LAMBDA_GLIBC = {(3, 11): (2, 26)}  # python3.11: Amazon Linux 2; later: Amazon Linux 2023
_LAMBDA_GLIBC_LATER = (2, 34)
_EXTENSION = re.compile(r"\.cpython-(\d)(\d+)-(\w+)-linux-gnu\.so$")
_GLIBC_SYMBOL = re.compile(rb"GLIBC_(\d+)\.(\d+)")

Runner = Callable[[Sequence[str]], None]


class PackageError(Ddb2bqError):
    """The package could not be built; the message says which step failed and why."""


@dataclass(frozen=True, slots=True)
class PackageSpec:
    """What to build: the Lambda architecture, its Python version and the output path."""

    arch: str = "arm64"
    python: str = "3.12"
    out: Path = DEFAULT_OUT
    constraints: Path | None = None
    compile: bool = True
    source: Path | None = None
    """The ddb2bq package folder to copy; default the one running this."""
    converter: str = "auto"
    """``auto``: the compiled converter when :func:`find_compiled` finds one for the target, else
    pure Python; ``compiled``: the compiled one or a :class:`PackageError`; ``pure``: never."""


@dataclass(frozen=True, slots=True)
class Converter:
    """The compiled converter's files (relative to ``site``), or why the package has none."""

    site: Path
    files: tuple[str, ...] = ()
    why_pure: str = ""

    @property
    def compiled(self) -> bool:
        return bool(self.files)


@dataclass(frozen=True, slots=True)
class PackageResult:
    """The built zip: where it is, its size, how many files, whether ``.pyc`` are inside, and
    which converter it carries."""

    path: Path
    size_bytes: int
    files: int
    compiled_with: str | None
    converter: Converter


def build_package(
    spec: PackageSpec,
    *,
    requirements: Sequence[str] | None = None,
    runner: Runner | None = None,
) -> PackageResult:
    """Build the deployment zip described by ``spec``.

    ``requirements`` defaults to ddb2bq's runtime dependencies (:func:`runtime_requirements`);
    ``runner`` runs pip (a subprocess by default).
    """
    _check_spec(spec)
    run = runner or _run
    source = spec.source or Path(__file__).resolve().parents[1]
    converter = _converter(spec, source)
    with tempfile.TemporaryDirectory(prefix="ddb2bq-package-") as work:
        target = Path(work) / "package"
        reqs = list(requirements if requirements is not None else runtime_requirements())
        run(pip_command(spec, target, reqs))
        remove_distributions(target, RUNTIME_PROVIDED)
        _remove_build_leftovers(target)
        copy_ddb2bq(target / "ddb2bq", source)
        for relative in converter.files:
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(converter.site / relative, target / relative)
        interpreter = find_interpreter(spec.python) if spec.compile else None
        if interpreter is not None:
            run(compile_command(interpreter, target))
        files = write_zip(target, spec.out)
    return PackageResult(spec.out, spec.out.stat().st_size, files, interpreter, converter)


def _check_spec(spec: PackageSpec) -> None:
    if spec.arch not in ARCHITECTURES:
        raise PackageError(f"Unknown architecture {spec.arch!r}; use x86_64 or arm64.")
    if spec.python not in PYTHONS:
        raise PackageError(f"Unsupported Python {spec.python!r}; use {', '.join(PYTHONS)}.")
    if spec.converter not in CONVERTERS:
        raise PackageError(f"Unknown converter {spec.converter!r}; use {', '.join(CONVERTERS)}.")


def _converter(spec: PackageSpec, source: Path) -> Converter:
    if spec.converter == "pure":
        return Converter(source.parent, why_pure="asked for (--converter pure)")
    found = find_compiled(source, spec.arch, spec.python)
    if spec.converter == "compiled" and not found.compiled:
        raise PackageError(
            f"--converter compiled: {found.why_pure}. Package with --converter auto or pure "
            "for the pure-Python converter (the same values, converted slower)."
        )
    return found


def find_compiled(source: Path, arch: str, python: str) -> Converter:
    """The compiled converter of the ddb2bq install whose package folder is ``source``, for
    Lambda's Python ``python`` on ``arch``; or, with no files, the reason it cannot go in.

    The files are the extension modules the install's ``RECORD`` lists (``ddb2bq/*.so`` and
    mypyc's shared library beside the package). They fit when every one was built for CPython
    ``python`` on the target's machine, and needs no newer glibc than that Lambda runtime has
    (Amazon Linux 2, glibc 2.26, for python3.11; Amazon Linux 2023, 2.34, later).
    """
    site = source.parent
    records = sorted(site.glob("ddb2bq-*.dist-info/RECORD"))
    if not records:
        return Converter(site, why_pure=f"the ddb2bq at {source} is not an installed wheel")
    listed = [line.rsplit(",", 2)[0] for line in records[-1].read_text("utf-8").splitlines()]
    extensions = sorted(name for name in listed if name.endswith(".so"))
    if not extensions:
        return Converter(
            site,
            why_pure=f"the ddb2bq installed at {site} is pure Python (an editable install, "
            "PURE_DDB2BQ=1, or no C compiler where it was built)",
        )
    machine = ARCHITECTURES[arch]
    for name in extensions:
        path = (site / name).resolve()
        tag = _EXTENSION.search(name)
        if not path.is_relative_to(site.resolve()) or not path.is_file():
            return Converter(site, why_pure=f"{site / name}, listed by {records[-1]}, is missing")
        if tag is None or (f"{tag[1]}.{tag[2]}", tag[3]) != (python, machine):
            built_for = f"Python {tag[1]}.{tag[2]} on {tag[3]}" if tag else "another platform"
            return Converter(
                site,
                why_pure=f"the compiled modules installed at {site} are for {built_for}, not "
                f"Python {python} on {machine}: package on {machine} Linux with a ddb2bq "
                f"installed for Python {python}",
            )
        needs = required_glibc(path.read_bytes())
        has = _LAMBDA_GLIBC.get(_version(python), _LAMBDA_GLIBC_LATER)
        if needs > has:
            return Converter(
                site,
                why_pure=f"{site / name} needs glibc {needs[0]}.{needs[1]}, newer than the "
                f"{has[0]}.{has[1]} of Lambda's python{python} runtime: build ddb2bq on an "
                "older Linux",
            )
    return Converter(site, tuple(extensions))


def required_glibc(binary: bytes) -> tuple[int, int]:
    """The newest glibc symbol version a shared library names (its ``GLIBC_2.N`` references).

    >>> required_glibc(b"\\x00GLIBC_2.2.5\\x00GLIBC_2.14\\x00")
    (2, 14)
    """
    found = [(int(m[1]), int(m[2])) for m in _GLIBC_SYMBOL.finditer(binary)]
    return max(found, default=(2, 0))


def platforms(arch: str, python: str) -> list[str]:
    """The wheel platform tags the Lambda runtime ``python`` on ``arch`` can load.

    >>> platforms("arm64", "3.11")
    ['manylinux2014_aarch64']
    """
    machine = ARCHITECTURES[arch]
    tags = [f"manylinux2014_{machine}"]
    if _version(python) >= _GLIBC_2_28_FROM:
        tags.append(f"manylinux_2_28_{machine}")
    return tags


def pip_command(spec: PackageSpec, target: Path, requirements: Sequence[str]) -> list[str]:
    """The pip command that installs ``requirements`` for the Lambda platform into ``target``."""
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    for tag in platforms(spec.arch, spec.python):
        command += ["--platform", tag]
    command += ["--implementation", "cp", "--python-version", spec.python]
    command += ["--only-binary=:all:", "--no-compile", "--target", str(target)]
    if spec.constraints is not None:
        command += ["--constraint", str(spec.constraints)]
    return [*command, *requirements]


def runtime_requirements() -> list[str]:
    """ddb2bq's runtime dependencies: ``pyproject.toml`` in a checkout, else installed metadata.

    Optional extras (``boto3`` under ``aws``) are not runtime dependencies of the function.
    """
    pyproject = Path(__file__).resolve().parents[3] / "pyproject.toml"
    if pyproject.is_file():
        project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
        if project.get("name") == "ddb2bq":
            return [str(r) for r in project.get("dependencies", [])]
    requires = importlib.metadata.requires("ddb2bq") or []
    return [r for r in requires if "extra ==" not in r]


def remove_distributions(target: Path, names: Iterable[str]) -> list[str]:
    """Delete the named distributions installed in ``target`` (every file their RECORD lists).

    Returns the names removed. RECORD is the installer's own list, so shared namespace folders
    (``google/``) and other distributions' files are never touched.
    """
    wanted = {_normalise(n) for n in names}
    removed = []
    for dist_info in sorted(target.glob("*.dist-info")):
        name = _normalise(dist_info.name.removesuffix(".dist-info").split("-")[0])
        if name not in wanted:
            continue
        for line in (dist_info / "RECORD").read_text(encoding="utf-8").splitlines():
            relative = line.rsplit(",", 2)[0]
            path = (target / relative).resolve()
            if path.is_relative_to(target.resolve()) and path.is_file():
                path.unlink()
        shutil.rmtree(dist_info, ignore_errors=True)
        removed.append(name)
    _remove_empty_dirs(target)
    return removed


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _remove_build_leftovers(target: Path) -> None:
    shutil.rmtree(target / "bin", ignore_errors=True)  # console scripts for the build machine
    for cache in sorted(target.rglob("__pycache__"), reverse=True):
        shutil.rmtree(cache, ignore_errors=True)
    _remove_empty_dirs(target)


def _remove_empty_dirs(root: Path) -> None:
    for folder in sorted((p for p in root.rglob("*") if p.is_dir()), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()


def copy_ddb2bq(destination: Path, source: Path) -> None:
    """Copy the ddb2bq package's sources (the folder ``source``) to ``destination``."""
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if path.is_file() and path.suffix in _PACKAGE_SUFFIXES:
            if _SKIP_DIRS.intersection(relative.parts):
                continue
            (destination / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, destination / relative)


def find_interpreter(python: str) -> str | None:
    """A Python ``X.Y`` interpreter to compile ``.pyc`` with: this one, else ``pythonX.Y``."""
    if f"{sys.version_info[0]}.{sys.version_info[1]}" == python:
        return sys.executable
    candidate = shutil.which(f"python{python}")
    if candidate is None:
        return None
    probe = [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"]
    try:
        found = subprocess.run(probe, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return candidate if found.returncode == 0 and found.stdout.strip() == python else None


def compile_command(interpreter: str, target: Path) -> list[str]:
    """compileall in ``unchecked-hash`` mode (no timestamps inside; the zip never changes)."""
    return [
        interpreter,
        "-m",
        "compileall",
        "-q",
        "-j",
        "1",  # one process: the order of work cannot change the output
        "--invalidation-mode",
        "unchecked-hash",
        "-d",
        "/var/task",
        str(target),
    ]


def write_zip(source: Path, out: Path) -> int:
    """Zip ``source`` into ``out`` reproducibly; returns the number of files."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    entries = sorted((_entry_name(p, source), p) for p in source.rglob("*"))
    files = 0
    with zipfile.ZipFile(partial, "w") as archive:
        for name, path in entries:
            if path.is_dir():
                archive.writestr(_info(name, DIR_MODE | stat.S_IFDIR), b"")
            else:
                info = _info(name, FILE_MODE | stat.S_IFREG)
                archive.writestr(info, path.read_bytes(), compresslevel=9)
                files += 1
    os.replace(partial, out)
    return files


def _entry_name(path: Path, root: Path) -> str:
    """The archive name: POSIX, relative, folders ending in '/' (sorted as they are stored)."""
    name = path.relative_to(root).as_posix()
    return name + "/" if path.is_dir() else name


def _info(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
    info.create_system = 3  # Unix, so the permission bits below are honoured
    info.external_attr = mode << 16
    info.compress_type = zipfile.ZIP_STORED if name.endswith("/") else zipfile.ZIP_DEFLATED
    return info


def _run(command: Sequence[str]) -> None:
    environment = {**os.environ, "PYTHONHASHSEED": "0", "SOURCE_DATE_EPOCH": "315532800"}
    try:
        subprocess.run(command, check=True, env=environment, capture_output=True)
    except subprocess.CalledProcessError as exc:
        tail = (exc.stderr or b"").decode(errors="replace").strip().splitlines()[-15:]
        raise PackageError(
            f"`{' '.join(command[:4])} ...` failed with exit code {exc.returncode}:\n"
            + "\n".join(tail)
        ) from exc
    except OSError as exc:
        raise PackageError(f"Cannot run {command[0]!r}: {exc.strerror}.") from exc


def _version(text: str) -> tuple[int, int]:
    major, minor = text.split(".")
    return int(major), int(minor)
