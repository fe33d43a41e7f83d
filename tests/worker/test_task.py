"""The decorator API round trip through a real worker process and the fake API."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import raftsched
from raftsched.client import Client
from tests.client.fake_api import FakeApi
from tests.worker import tasks
from tests.worker.helpers import start_worker, stop


@pytest.fixture(scope="module")
def api() -> Iterator[FakeApi]:
    with FakeApi() as fake:
        proc = start_worker(fake.url, ["deco"], extra=["--import", "tests.worker.tasks"])
        try:
            yield fake
        finally:
            stop(proc)


@pytest.fixture
def client(api: FakeApi) -> Iterator[Client]:
    c = raftsched.configure(api.url)
    yield c


def test_submit_and_result(client: Client) -> None:
    assert tasks.multiply(6, 7) == 42  # still a plain function locally
    h = tasks.multiply.submit(6, 7)
    assert h.result(timeout=20) == 42
    assert h.status() == "succeeded"


def test_remote_failure_is_raised_with_the_remote_error(client: Client) -> None:
    h = tasks.explode.submit("kaboom")
    with pytest.raises(raftsched.TaskFailed) as info:
        h.result(timeout=20)
    assert "ValueError: kaboom" in str(info.value)
    assert info.value.job.state == "dead"


def test_after_makes_a_workflow(client: Client) -> None:
    a = tasks.multiply.submit(2, 3)
    b = tasks.multiply.submit(4, 5, after=[a])
    assert b.result(timeout=20) == 20
    assert client.get_job(b.id).raw["depends_on"] == [a.id]


def test_cancel_and_main_module_refused(client: Client) -> None:
    unserved = raftsched.task(queue="unserved")(tasks.add)
    h = unserved.submit(1, 2)
    assert h.status() == "pending"
    h.cancel()
    assert h.status() == "cancelled"
    with pytest.raises(raftsched.TaskFailed):
        h.result(timeout=5)

    def local() -> None: ...

    local.__module__ = "__main__"
    with pytest.raises(ValueError, match="importable module"):
        raftsched.task(queue="q")(local).submit()


def test_non_json_arguments_are_refused(client: Client) -> None:
    with pytest.raises(TypeError, match="JSON"):
        tasks.multiply.submit(object(), 1)
