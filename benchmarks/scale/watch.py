"""When each pipeline's Deployment first existed and each pipeline first turned Ready, seen
through `kubectl get --watch` (one watch per kind, started before `kubectl apply`).

A watch sees an object within milliseconds of the write, costs the API server one stream
instead of repeated lists of 1,000 objects, and its lines carry the object's own state.
"""

from __future__ import annotations

import subprocess
import threading
import time


class FirstSeen:
    """Runs `kubectl get <kind> --watch -o jsonpath=<name> <value>` and records, per name, the
    monotonic time at which `accept(value)` first held."""

    def __init__(self, kubectl: str, namespace: str, kind: str, jsonpath: str,
                 accept: str | None = None, selector: str | None = None) -> None:
        args = [kubectl, "get", kind, "-n", namespace, "--watch",
                "-o", f"jsonpath={{.metadata.name}} {jsonpath}{{\"\\n\"}}"]
        if selector:
            args += ["-l", selector]
        self.accept = accept
        self.times: dict[str, float] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True)
        self._thread = threading.Thread(target=self._read, name=f"watch-{kind}", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            name, _, value = line.strip().partition(" ")
            if not name or (self.accept is not None and value != self.accept):
                continue
            with self._changed:
                self.times.setdefault(name, time.monotonic())
                self._changed.notify_all()

    def count(self) -> int:
        with self._lock:
            return len(self.times)

    def wait_for(self, count: int, deadline: float) -> bool:
        """Block until `count` names were seen or the monotonic `deadline` passes."""
        with self._changed:
            while len(self.times) < count:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    return len(self.times) >= count
                self._changed.wait(min(left, 1.0))
            return True

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._thread.join(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def deployments(kubectl: str, namespace: str) -> FirstSeen:
    return FirstSeen(kubectl, namespace, "deployments", "x",
                     selector="app.kubernetes.io/managed-by=scorefleet")


def ready_pipelines(kubectl: str, namespace: str) -> FirstSeen:
    return FirstSeen(kubectl, namespace, "scoringpipelines", "{.status.phase}", accept="Ready")
