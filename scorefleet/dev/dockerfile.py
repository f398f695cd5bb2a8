"""Just enough of the Dockerfile format for our own Dockerfile: instructions (continuations
joined, comments dropped), stages, and the .dockerignore patterns the build context is cut with.

image.py keys its cache on exactly the files of the build context; the tests check the
Dockerfile's shape with the same parser."""

from __future__ import annotations

import fnmatch
import shlex
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY...
    value: str


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def values(self, keyword: str) -> list[str]:
        return [i.value for i in self.instructions if i.keyword == keyword]


def instructions(text: str) -> list[Instruction]:
    out: list[Instruction] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not buf and not line):
            continue  # comments (also inside a continued instruction) and blank lines
        if line.endswith("\\"):
            buf += line[:-1].rstrip() + " "
            continue
        buf += line
        keyword, _, value = buf.partition(" ")
        out.append(Instruction(keyword.upper(), value.strip()))
        buf = ""
    if buf:
        raise ValueError(f"dangling continuation: {buf!r}")
    return out


def stages(text: str) -> tuple[dict[str, str], list[Stage]]:
    """(global ARG defaults, stages in order), with ${ARG} expanded in FROM lines."""
    args: dict[str, str] = {}
    result: list[Stage] = []
    for ins in instructions(text):
        if ins.keyword == "FROM":
            words = ins.value.split()
            base = words[0]
            for k, v in args.items():
                base = base.replace(f"${{{k}}}", v).replace(f"${k}", v)
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            result.append(Stage(base, name))
        elif not result and ins.keyword == "ARG":
            k, _, v = ins.value.partition("=")
            args[k] = v
        else:
            if not result:
                raise ValueError(f"{ins.keyword} before FROM")
            result[-1].instructions.append(ins)
    return args, result


def env_pairs(value: str) -> dict[str, str]:
    """ENV K=V K2="V 2" (the legacy `ENV K V` form is not used here)."""
    pairs = {}
    for word in shlex.split(value):
        k, sep, v = word.partition("=")
        if not sep:
            raise ValueError(f"ENV without '=': {value!r}")
        pairs[k] = v
    return pairs


@dataclass(frozen=True)
class DockerIgnore:
    """Our .dockerignore is an allow-list: `*`, then `!path` for each thing the build needs,
    then exclusions inside those."""

    allowed: list[str]
    excluded: list[str]

    @classmethod
    def read(cls, path: Path) -> DockerIgnore:
        lines = [ln.strip() for ln in path.read_text().splitlines()]
        patterns = [ln for ln in lines if ln and not ln.startswith("#")]
        if not patterns or patterns[0] != "*":
            raise ValueError(f"{path} must start by ignoring everything (`*`)")
        allowed = [p[1:].rstrip("/") for p in patterns[1:] if p.startswith("!")]
        excluded = [p.rstrip("/") for p in patterns[1:] if not p.startswith("!")]
        return cls(allowed, excluded)

    def is_excluded(self, rel: PurePosixPath) -> bool:
        prefixes = [PurePosixPath(*rel.parts[:i]) for i in range(1, len(rel.parts) + 1)]
        for pattern in self.excluded:
            if pattern.startswith("**/"):
                tail = pattern[3:]
                if any(fnmatch.fnmatchcase(part, tail) for part in rel.parts):
                    return True
            elif any(fnmatch.fnmatchcase(str(p), pattern) for p in prefixes):
                return True
        return False

    def is_in_context(self, rel: PurePosixPath) -> bool:
        top = any(rel == PurePosixPath(a) or PurePosixPath(a) in rel.parents
                  for a in self.allowed)
        return top and not self.is_excluded(rel)

    def files(self, root: Path) -> list[Path]:
        """Every file of the build context under `root`, sorted."""
        found: list[Path] = []
        for allowed in self.allowed:
            top = root / allowed
            candidates = [top] if top.is_file() else sorted(top.rglob("*"))
            for path in candidates:
                rel = PurePosixPath(path.relative_to(root).as_posix())
                if path.is_file() and self.is_in_context(rel):
                    found.append(path)
        return sorted(found)
