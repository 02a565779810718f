"""Scripts started in the same turn of the event loop share one pipeline, and each keeps its own reply."""

from __future__ import annotations

import asyncio

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from gateway import redis_scripts

ECHO = redis_scripts.script("return {KEYS[1], ARGV[1]}")
FAIL = redis_scripts.script("return redis.error_reply('this script fails')")
INCR = redis_scripts.script("return redis.call('INCRBY', KEYS[1], ARGV[1])")


async def test_calls_made_together_each_get_their_own_reply(redis_url, project_id):
    replies = await asyncio.gather(*(redis_scripts.run(ECHO, [f"k{i}"], [i]) for i in range(50)))

    assert replies == [[f"k{i}".encode(), str(i).encode()] for i in range(50)]


async def test_a_failing_script_fails_only_its_own_caller(redis_url, project_id):
    replies = await asyncio.gather(
        redis_scripts.run(ECHO, ["a"], [1]), redis_scripts.run(FAIL, [], []), return_exceptions=True
    )

    assert replies[0] == [b"a", b"1"]
    assert isinstance(replies[1], ResponseError) and "this script fails" in str(replies[1])


async def test_calls_made_together_run_once_each_after_redis_forgot_the_scripts(redis_url, project_id):
    key = f"pipelining-test:{project_id}"
    with redis.Redis.from_url(redis_url) as client:
        client.script_flush()

    replies = await asyncio.gather(*(redis_scripts.run(INCR, [key], [1]) for _ in range(10)))

    assert sorted(int(r) for r in replies) == list(range(1, 11))
    with redis.Redis.from_url(redis_url) as client:
        assert int(client.get(key)) == 10
        client.delete(key)


async def test_every_caller_gets_the_error_when_nothing_listens(closed_redis):
    replies = await asyncio.gather(*(redis_scripts.run(ECHO, ["k"], [1]) for _ in range(3)), return_exceptions=True)

    assert all(isinstance(r, (RedisConnectionError, OSError)) for r in replies), replies


@pytest.fixture(autouse=True)
async def _fresh_client():
    redis_scripts.forget()
    yield
    await redis_scripts.close()
