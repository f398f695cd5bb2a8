"""Loading the scorer's config file and noticing when it changes.

A ConfigMap mounted as a volume changes by an atomic symlink swap (``..data`` points at a new
timestamped directory), so the file's own mtime can stay the same and inotify on the file misses
it. Polling the *content* (it is a few hundred bytes) through the path, which follows the
symlinks, sees every swap and nothing else; a touched-but-identical file is not a change.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from scorefleet.api.scorer_config import ScorerConfig

log = logging.getLogger(__name__)

# Fields a running worker cannot change without a restart (sockets, process count, ORT threads).
RESTART_FIELDS = ("port", "metrics_port", "workers", "intra_op_threads",
                  "max_connection_age_seconds")


class ConfigError(Exception):
    """The config file is missing, not YAML, or not a valid ScorerConfig."""


def parse_config(text: bytes | str, source: str = "<config>") -> ScorerConfig:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got "
                          f"{type(raw).__name__}")
    try:
        return ScorerConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: invalid scorer config: {exc}") from exc


def load_config(path: str | Path) -> ScorerConfig:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    return parse_config(data, str(path))


def restart_needed(old: ScorerConfig, new: ScorerConfig) -> list[str]:
    """Names of changed fields that a hot reload cannot apply."""
    return [f for f in RESTART_FIELDS if getattr(old, f) != getattr(new, f)]


@dataclass
class ConfigWatcher:
    """Remembers the digest of the last config seen; ``poll`` returns a new config once."""

    path: Path
    digest: str = ""

    def prime(self) -> ScorerConfig:
        """Read the config at start; errors propagate (a bad config at start is fatal)."""
        data = self.path.read_bytes()
        config = parse_config(data, str(self.path))
        self.digest = hashlib.sha256(data).hexdigest()
        return config

    def poll(self) -> ScorerConfig | None:
        """A new valid config if the content changed since the last poll, else None.

        An unreadable file (mid-swap) is retried next poll. An invalid new file raises
        ConfigError once: its digest is remembered so it is reported once, not every poll, and
        the caller keeps running on the old config.
        """
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            # Mid-swap or briefly missing: try again next poll, keep the old config.
            log.debug("config %s unreadable: %s", self.path, exc)
            return None
        digest = hashlib.sha256(data).hexdigest()
        if digest == self.digest:
            return None
        self.digest = digest
        try:
            return parse_config(data, str(self.path))
        except ConfigError as exc:
            raise ConfigError(f"{exc}; keeping the running config") from exc
