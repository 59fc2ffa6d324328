"""Generates the Python gRPC stubs from paygate's proto/ into _stubs/ (gitignored).

Run it once after `pip install -r requirements.txt` (`python make_stubs.py`); the other scripts
also call `ensure()` on import, so a changed proto/ is picked up without thinking about it. The
stubs are regenerated only when the .proto files (or grpcio-tools) change: a hash of them is kept
in _stubs/.stamp. Generation happens in a temporary directory that replaces _stubs/ in one rename,
under a lock, so two scripts starting at once never see half-written stubs.

PAYGATE_PROTO_DIR overrides where proto/ is (default: ../../proto from this file).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "_stubs"
LOCK = HERE / ".stubs.lock"


def proto_dir() -> Path:
    return Path(os.environ.get("PAYGATE_PROTO_DIR") or HERE.parent.parent / "proto").resolve()


def _protos(root: Path) -> list[Path]:
    files = sorted(root.rglob("*.proto"))
    if not files:
        raise SystemExit(f"make_stubs: no .proto files under {root} (set PAYGATE_PROTO_DIR)")
    return files


def _fingerprint(root: Path, files: list[Path]) -> str:
    import grpc_tools

    h = hashlib.sha256()
    h.update(getattr(grpc_tools, "__version__", "").encode())
    try:
        from importlib.metadata import version

        h.update(version("grpcio-tools").encode())
    except Exception:  # pragma: no cover - metadata missing only in odd installs
        pass
    for f in files:
        h.update(str(f.relative_to(root)).encode() + b"\0")
        h.update(f.read_bytes() + b"\0")
    return h.hexdigest()


def _generate(root: Path, files: list[Path], into: Path) -> None:
    import grpc_tools
    from grpc_tools import protoc

    well_known = Path(grpc_tools.__file__).parent / "_proto"  # google/protobuf/*.proto
    args = [
        "grpc_tools.protoc",
        f"-I{root}",
        f"-I{well_known}",
        f"--python_out={into}",
        f"--grpc_python_out={into}",
        *[str(f.relative_to(root)) for f in files],
    ]
    if protoc.main(args) != 0:
        raise SystemExit(f"make_stubs: protoc failed on {root}")


def ensure(verbose: bool = False) -> Path:
    """Makes sure _stubs/ matches proto/ and is on sys.path; returns its path."""
    root = proto_dir()
    files = _protos(root)
    want = _fingerprint(root, files)
    stamp = OUT / ".stamp"
    if not (stamp.exists() and stamp.read_text() == want):
        with open(LOCK, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (stamp.exists() and stamp.read_text() == want):  # another process may have done it
                tmp = Path(tempfile.mkdtemp(prefix="_stubs.", dir=HERE))
                try:
                    _generate(root, files, tmp)
                    (tmp / ".stamp").write_text(want)
                    old = None
                    if OUT.exists():
                        old = HERE / f"_stubs.old.{os.getpid()}"
                        OUT.rename(old)
                    tmp.rename(OUT)
                    if old is not None:
                        shutil.rmtree(old, ignore_errors=True)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
                if verbose:
                    print(f"make_stubs: generated {len(files)} proto files from {root} into {OUT}")
            elif verbose:
                print(f"make_stubs: {OUT} is up to date with {root}")
    elif verbose:
        print(f"make_stubs: {OUT} is up to date with {root}")
    if str(OUT) not in sys.path:
        sys.path.insert(0, str(OUT))
    return OUT


if __name__ == "__main__":
    ensure(verbose=True)
