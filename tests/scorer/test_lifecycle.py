"""The drain sequence runs its steps in the contract's order, with the configured delays."""

from __future__ import annotations

import asyncio

from scorefleet.scorer.lifecycle import DrainSteps, Lifecycle, Phase


def test_drain_order_and_delays() -> None:
    calls: list[str] = []

    async def scenario() -> Lifecycle:
        life = Lifecycle()

        async def not_serving() -> None:
            calls.append(f"not_serving in {life.phase.value}")

        async def sleep(seconds: float) -> None:
            calls.append(f"sleep {seconds}")

        async def stop(grace: float) -> None:
            calls.append(f"stop grace={grace} in {life.phase.value}")

        async def release() -> None:
            calls.append("release")

        life.request_stop()
        life.request_stop()  # idempotent
        assert life.stop_requested.is_set()
        await life.drain(DrainSteps(not_serving, stop, release, sleep), 5.0, 20.0)
        return life

    life = asyncio.run(scenario())
    assert calls == ["not_serving in draining", "sleep 5.0", "stop grace=20.0 in stopping",
                     "release"]
    assert life.phase is Phase.STOPPED
