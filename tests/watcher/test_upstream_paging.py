"""Lists that loop or shrink while they are read, answers that never finish, and the words of
upstream failures: the platform clients on their own (the fault matrix drives them through
the supervisor)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import httpx
import pytest

from store import Experiment, ExperimentNotFound, PayloadError, Snapshot, SourceUnavailable
from watcher import GrowthBookSource, StatsigSource

pytestmark = pytest.mark.anyio

Json = dict[str, Any]
Handler = Callable[[httpx.Request], httpx.Response]


def growthbook(client: httpx.AsyncClient, **options: Any) -> GrowthBookSource:
    return GrowthBookSource(
        name="gb", base_url="http://gb.test", api_key="k", client=client, status=None, **options
    )


def statsig(client: httpx.AsyncClient, **options: Any) -> StatsigSource:
    return StatsigSource(
        name="ss", base_url="http://ss.test", api_key="console-k", client=client, **options
    )


def gb_page(
    ids: list[str], *, offset: int, total: int, limit: int = 1, has_more: bool | None = None
) -> Json:
    """A page of GrowthBook's experiment list."""
    more = offset + limit < total if has_more is None else has_more
    return {
        "experiments": [
            {
                "id": experiment_id,
                "name": experiment_id,
                "status": "running",
                "dateUpdated": "2026-01-05T00:00:00.000Z",
                "variations": [],
            }
            for experiment_id in ids
        ],
        "limit": limit,
        "offset": offset,
        "count": len(ids),
        "total": total,
        "hasMore": more,
        "nextOffset": offset + limit if more else None,
    }


def recording(answer: Callable[[int, int], Json], asked: list[int]) -> Handler:
    """A GrowthBook list answering `answer(offset, reading)`, where `reading` counts the
    requests for offset 0 so far (1 for the first reading of the list)."""

    def handle(request: httpx.Request) -> httpx.Response:
        offset = int(request.url.params["offset"])
        asked.append(offset)
        return httpx.Response(200, json=answer(offset, asked.count(0)))

    return handle


async def test_a_growthbook_list_whose_pages_repeat_forever_is_an_error_not_a_hang() -> None:
    """A server ignoring the offset while promising more: the second page holds only what
    the first did; read again, the same: a PayloadError after four requests (not an endless
    read)."""
    asked: list[int] = []

    def answer(offset: int, reading: int) -> Json:
        return gb_page(["exp_a"], offset=offset, total=3, has_more=True)

    async with httpx.AsyncClient(transport=httpx.MockTransport(recording(answer, asked))) as c:
        with anyio.fail_after(5), pytest.raises(PayloadError) as caught:
            await growthbook(c, page_size=1, pages_in_flight=1).list_experiments()
    assert "did not advance" in str(caught.value) and "loops" in str(caught.value)
    assert asked == [0, 1, 0, 1]


async def test_a_growthbook_list_that_shrank_while_read_is_read_again() -> None:
    """exp_a is deleted after the first page: the second page counts one experiment fewer
    and exp_b (moved into the first page's place) would be missed; the second reading is
    taken, with exp_b and without exp_a."""
    asked: list[int] = []

    def answer(offset: int, reading: int) -> Json:
        items = ["exp_a", "exp_b", "exp_c"] if reading == 1 and offset == 0 else ["exp_b", "exp_c"]
        return gb_page(items[offset : offset + 1], offset=offset, total=len(items))

    async with httpx.AsyncClient(transport=httpx.MockTransport(recording(answer, asked))) as c:
        found = await growthbook(c, page_size=1).list_experiments()
    assert [e.experiment_id for e in found] == ["exp_b", "exp_c"]
    assert asked.count(0) == 2


async def test_a_growthbook_list_listing_one_experiment_twice_keeps_it_once() -> None:
    """An experiment added at the front while paging pushes the list back: one experiment
    comes twice (no harm, the page still brings a new one) and is listed once."""

    def answer(offset: int, reading: int) -> Json:
        before = ["exp_a", "exp_b", "exp_c"]
        items = before if offset == 0 else ["exp_new", *before]
        return gb_page(items[offset : offset + 2], offset=offset, total=len(items), limit=2)

    async with httpx.AsyncClient(transport=httpx.MockTransport(recording(answer, []))) as c:
        found = await growthbook(c, page_size=2).list_experiments()
    assert [e.experiment_id for e in found] == ["exp_a", "exp_b", "exp_c"]


async def test_a_list_shifted_by_a_whole_page_is_read_again_not_mistaken_for_a_loop() -> None:
    """One experiment per page, and one added at the front after the first page: the second
    page repeats the first, as a loop would; read again, the list is whole."""
    asked: list[int] = []

    def answer(offset: int, reading: int) -> Json:
        items = ["exp_new", "exp_a", "exp_b"]
        if reading == 1 and offset == 0:
            items = items[1:]
        return gb_page(items[offset : offset + 1], offset=offset, total=len(items))

    async with httpx.AsyncClient(transport=httpx.MockTransport(recording(answer, asked))) as c:
        found = await growthbook(c, page_size=1).list_experiments()
    assert [e.experiment_id for e in found] == ["exp_new", "exp_a", "exp_b"]
    assert asked == [0, 1, 0, 1, 2]


async def test_a_growthbook_portfolio_that_shrank_while_read_is_read_again() -> None:
    """The portfolio scan loses exp_a after its first page: every experiment still reaches
    the pages sent (exp_b on the second reading), the first reading's pages included."""
    readings: list[int] = []

    def handle(request: httpx.Request) -> httpx.Response:
        offset = int(request.url.params["offset"])
        if offset == 0:
            readings.append(offset)
        first = len(readings) == 1 and offset == 0
        items = ["exp_a", "exp_b", "exp_c"] if first else ["exp_b", "exp_c"]
        page = items[offset : offset + 1]
        more = offset + 1 < len(items)
        return httpx.Response(
            200,
            json={
                "experimentResults": [result(x) for x in page],
                "total": len(items),
                "hasMore": more,
                "nextOffset": offset + 1 if more else None,
            },
        )

    sent, received = anyio.create_memory_object_stream[dict[str, Snapshot | PayloadError]](10)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as c, received:
        await growthbook(c, page_size=1).read_portfolio({}, sent)
        pages = [page async for page in received]
    seen = [x for page in pages for x in page]
    assert set(seen) == {"exp_a", "exp_b", "exp_c"} and len(readings) == 2


def result(experiment_id: str) -> Json:
    return {
        "id": f"snp_{experiment_id}",
        "dateUpdated": "2026-01-05T00:00:00.000Z",
        "experimentId": experiment_id,
        "phase": "0",
        "results": [{"dimension": "All", "totalUsers": 10, "checks": {}, "metrics": []}],
    }


async def test_a_statsig_list_that_shrank_while_read_is_read_again() -> None:
    """Statsig's totalItems drops between pages: the list is read once more, and what it
    holds then is what is listed."""
    asked: list[int] = []

    def handle(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["page"])
        asked.append(page)
        first = asked.count(1) == 1 and page == 1
        items = ["a", "b", "c"] if first else ["b", "c"]
        more = page < len(items)
        data = [{"id": i, "status": "active", "groups": []} for i in items[page - 1 : page]]
        return httpx.Response(
            200,
            json={
                "data": data,
                "pagination": {
                    "pageNumber": page,
                    "totalItems": len(items),
                    "nextPage": f"?page={page + 1}" if more else None,
                },
            },
        )

    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as c:
        found = await statsig(c, page_size=1).list_experiments()
    assert [e.experiment_id for e in found] == ["b", "c"]
    assert asked == [1, 2, 1, 2]


class _Drip(httpx.AsyncByteStream):
    """A body that arrives a byte every 10 ms and never ends."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            await anyio.sleep(0.01)
            yield b" "


async def test_an_answer_that_never_finishes_is_cut_off_by_the_request_deadline() -> None:
    """A 200 whose body drips in (every read well within httpx's own timeout) ends at
    request_timeout_seconds, as SourceUnavailable naming the timeout; retried, then given up."""
    attempts = 0

    def drip(request: httpx.Request) -> httpx.Response:
        nonlocal attempts
        attempts += 1
        return httpx.Response(200, headers={"Content-Type": "application/json"}, stream=_Drip())

    async with httpx.AsyncClient(transport=httpx.MockTransport(drip)) as c:
        gb = growthbook(c, request_timeout_seconds=0.1)
        with anyio.fail_after(10), pytest.raises(SourceUnavailable) as caught:
            await gb.fetch_results(
                Experiment(source="gb", experiment_id="exp_a", name="a", status="")
            )
    assert "timed out after 0.1 s" in str(caught.value)
    assert attempts == 1  # this source's retry policy: one attempt


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (httpx.RemoteProtocolError("peer closed"), "the connection was dropped before the answer"),
        (httpx.ReadError("reset"), "the connection was reset while the answer was read"),
        (httpx.ConnectError("refused"), "the connection could not be opened (ConnectError)"),
    ],
)
async def test_a_transport_failure_says_what_happened_to_the_connection(
    error: httpx.TransportError, words: str
) -> None:
    """A dropped, reset or refused connection is told apart in the error's words."""

    def fail(request: httpx.Request) -> httpx.Response:
        raise error

    async with httpx.AsyncClient(transport=httpx.MockTransport(fail)) as c:
        with pytest.raises(SourceUnavailable) as caught:
            await statsig(c).list_experiments()
    assert words in str(caught.value) and "cannot reach Statsig" in str(caught.value)


async def test_a_body_that_is_not_json_is_called_malformed() -> None:
    """A truncated body is "malformed JSON", with the parser's own words."""

    def truncated(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, content=b'{"experiments": [', headers={"Content-Type": "application/json"}
        )

    async with httpx.AsyncClient(transport=httpx.MockTransport(truncated)) as c:
        with pytest.raises(PayloadError) as caught:
            await growthbook(c).list_experiments()
    assert "returned an unexpected payload: malformed JSON (Invalid JSON: " in str(caught.value)


async def test_a_portfolio_of_empty_pages_promising_more_for_ever_ends() -> None:
    """Past the total its first page gave, a portfolio page holding nothing and promising
    more is no progress: read again, then given up with a PayloadError, in a few requests."""
    asked: list[int] = []

    def handle(request: httpx.Request) -> httpx.Response:
        offset = int(request.url.params["offset"])
        asked.append(offset)
        page = [result("exp_a")] if offset == 0 else []
        body = {"experimentResults": page, "total": 2, "hasMore": True, "nextOffset": offset + 1}
        return httpx.Response(200, json=body)

    sent, received = anyio.create_memory_object_stream[dict[str, Snapshot | PayloadError]](10)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as c, received:
        with anyio.fail_after(5), pytest.raises(PayloadError, match="did not advance"):
            await growthbook(c, page_size=1).read_portfolio({}, sent)
    assert asked == [0, 1, 2, 0, 1, 2]  # offset 1 (within the total) may be empty


async def test_an_experiment_gone_since_it_was_listed_is_not_suggested_to_itself() -> None:
    """A 404 for an experiment the source listed before says so, and suggests only other
    experiments, never the one asked for."""

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/experiments"):
            data: list[Json] = [
                {"id": i, "status": "active", "groups": []} for i in ("pricing", "pricing_v2")
            ]
            return httpx.Response(
                200, json={"data": data, "pagination": {"pageNumber": 1, "nextPage": None}}
            )
        return httpx.Response(404, json={"status": 404, "message": "Not Found."})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as c:
        ss = statsig(c)
        [pricing, _] = await ss.list_experiments()
        with pytest.raises(ExperimentNotFound) as caught:
            await ss.fetch_results(pricing)
    assert caught.value.suggestions == ["pricing_v2"]
    assert "It was listed before: it may have been deleted" in str(caught.value)
