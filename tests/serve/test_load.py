"""A bounded load test on 127.0.0.1 (`aura_jax.bench.serve`, the benchmark's own client): N clients stream
different questions at the pace of speech at once; every one gets the answer the model gives its clip
offline: nothing dropped, nothing mixed up between clients."""

from aura_jax.bench.serve import measure_load, offline_answers, serve_in_thread
from aura_jax.serve.app import Limits, Server

from .conftest import question


def test_concurrent_streams_each_get_their_own_clips_answer(aura):
    server = Server(aura, None, Limits(max_streams=3))
    clips = [question(i) for i in (0, 1, 3)]
    expected = offline_answers(server, clips, cascade=False)
    assert len({e["aura"] for e in expected}) == 3, f"the clips must differ in their answers: {expected}"
    url, stop = serve_in_thread(server)
    try:
        report = measure_load(server, url, clips, expected, streams=3, rounds=2)
    finally:
        stop()
    assert report["requests"] == 6 and report["errors"] == [] and report["wrong_answers"] == 0, report
    t = report["first_token_s"]
    assert 0 < t["server_p50"] <= t["server_p95"] and 0 < t["client_p50"] <= t["client_p95"]
    assert server.in_use == 0 and not server.live
