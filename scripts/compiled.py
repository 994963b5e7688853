"""Build ddb2bq's compiled build (see setup.py) for the running Python; print where it is.

    .venv/bin/python scripts/compiled.py        # -> .cache/compiled/cp311/site

The build is what ``pip install .`` installs: ``pip wheel`` of a copy of the checkout (so that
no ``build/`` of an earlier build leaks into it), with the build requirements of pyproject.toml
in pip's isolated environment, unpacked into ``.cache/compiled/<python tag>/site``. Put that
directory first on ``PYTHONPATH`` and ``import ddb2bq`` loads the compiled modules:
``scripts/test`` runs the unit tests so, and ``bench/convert.py`` measures it. The build is
redone only when the sources, setup.py or pyproject.toml change (a hash of them is kept beside).

Exit codes: 0 built (or up to date), 1 the build failed or left the modules pure Python (no C
compiler: pip's output says why), 130 stopped by Ctrl-C (the next run builds again).
"""

from __future__ import annotations

import hashlib
import runpy
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the modules setup.py compiles, as paths inside the package tree ("ddb2bq/convert")
COMPILED = [
    Path(path).relative_to("src").with_suffix("").as_posix()
    for path in runpy.run_path(str(ROOT / "setup.py"))["COMPILED_MODULES"]
]
INPUTS = ("setup.py", "pyproject.toml", "README.md")


def python_tag() -> str:
    return f"cp{sys.version_info[0]}{sys.version_info[1]}"


def fingerprint() -> str:
    """A hash of everything the build reads, and of the interpreter that builds it."""
    digest = hashlib.sha256(sys.version.encode())
    paths = [ROOT / name for name in INPUTS] + sorted((ROOT / "src").rglob("*.py"))
    for path in paths:
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def build(site: Path) -> None:
    """Build the wheel from a copy of the checkout and unpack it into ``site`` (replaced)."""
    with tempfile.TemporaryDirectory(prefix="ddb2bq-compiled-") as work:
        tree = Path(work, "tree")
        tree.mkdir()
        for name in INPUTS:
            shutil.copy2(ROOT / name, tree / name)
        ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.so")
        shutil.copytree(ROOT / "src", tree / "src", ignore=ignore)
        wheels = Path(work, "wheels")
        command = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels)]
        subprocess.run([*command, str(tree)], check=True, stdout=sys.stderr)
        (wheel,) = wheels.glob("ddb2bq-*.whl")
        shutil.rmtree(site, ignore_errors=True)
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(site)


def missing(site: Path) -> list[str]:
    """The modules that should be compiled in ``site`` and are not."""
    return [name for name in COMPILED if not list(site.glob(f"{name}.*.so"))]


def main() -> int:
    home = ROOT / ".cache" / "compiled" / python_tag()
    site, stamp = home / "site", home / "stamp"
    want = fingerprint()
    if stamp.is_file() and stamp.read_text() == want and not missing(site):
        print(site)
        return 0
    print(f"compiled: building ddb2bq's compiled build into {site}", file=sys.stderr)
    stamp.unlink(missing_ok=True)
    try:
        build(site)
    except (subprocess.CalledProcessError, OSError, ValueError) as exc:
        print(
            f"compiled: the build of {site} failed ({exc}); pip's output above says why",
            file=sys.stderr,
        )
        return 1
    absent = missing(site)
    if absent:
        names = ", ".join(name.replace("/", ".") for name in absent)
        print(
            f"compiled: {names} stayed pure Python in {site} (no C compiler? pip's output above"
            " says why); install gcc or cc and run again",
            file=sys.stderr,
        )
        return 1
    stamp.write_text(want)
    print(site)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the stamp was removed first: the next run builds again
        print("compiled: stopped by Ctrl-C; run it again to build", file=sys.stderr)
        sys.exit(130)
