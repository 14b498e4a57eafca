"""Loops beside the work stop when asked, even when what they run turns the cancellation
into an error of its own (a library cleaning up a cancelled call may do that)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

from app import periodic


class CancelledQuery(Exception):
    """What a client library may raise when the call it was in is cancelled."""


async def turns_cancel_into_error() -> None:
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        raise CancelledQuery("the query was cancelled") from None


def test_a_loop_whose_work_turns_the_cancel_into_an_error_still_stops(
    caplog: pytest.LogCaptureFixture,
) -> None:
    asyncio.run(_a_loop_whose_work_turns_the_cancel_into_an_error_still_stops(caplog))


async def _a_loop_whose_work_turns_the_cancel_into_an_error_still_stops(
    caplog: pytest.LogCaptureFixture,
) -> None:
    task = asyncio.create_task(periodic.every(0, turns_cancel_into_error, "the test loop"))
    await asyncio.sleep(0.05)  # inside the work
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=2)
    assert done == {task}
    assert task.cancelled()
    assert "the test loop failed" not in caplog.text  # a stop is not a failure


def test_a_loop_logs_a_real_failure_and_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    asyncio.run(_a_loop_logs_a_real_failure_and_goes_on(caplog))


async def _a_loop_logs_a_real_failure_and_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    calls = 0

    async def fails_twice() -> None:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise RuntimeError("the database hiccuped")

    with caplog.at_level(logging.ERROR):
        task = asyncio.create_task(periodic.every(0.01, fails_twice, "the test loop"))
        while calls < 4:  # noqa: ASYNC110 (the loop under test sleeps; so may the test)
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.wait({task})
    assert caplog.text.count("the test loop failed") == 2


def test_stop_asks_again_a_task_that_swallowed_the_first_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    asyncio.run(_stop_asks_again_a_task_that_swallowed_the_first_request(caplog))


async def _stop_asks_again_a_task_that_swallowed_the_first_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The old loops caught the error, logged it and slept again: the task ran on, and the
    process's stop waited for it until the hard exit."""

    async def swallows_once() -> None:
        # As an `except Exception` around a library that re-raised it as its own error:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(30)
        await asyncio.sleep(30)

    task = asyncio.create_task(swallows_once(), name="stubborn")
    await asyncio.sleep(0)
    held = await periodic.stop([task], within=5)
    assert held == set()
    assert task.cancelled()


def test_stop_names_a_task_that_outlives_it(caplog: pytest.LogCaptureFixture) -> None:
    asyncio.run(_stop_names_a_task_that_outlives_it(caplog))


async def _stop_names_a_task_that_outlives_it(caplog: pytest.LogCaptureFixture) -> None:
    deaf = True

    async def never_stops() -> None:
        while deaf:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                continue

    task = asyncio.create_task(never_stops(), name="deaf loop")
    await asyncio.sleep(0)
    with caplog.at_level(logging.WARNING):
        held = await periodic.stop([task], within=1.5)
    assert held == {task}
    assert "deaf loop did not stop within 2 s" in caplog.text
    deaf = False  # now it may stop
    task.cancel()
    await asyncio.wait({task})
