"""graphrec.ray_env: what of Ray's output reaches the user."""

import logging

import pytest

from graphrec import ray_env
from graphrec.ray_env import RayNoiseFilter, filter_forwarded_lines, is_ray_noise

PREFIX = "\x1b[36m(PlacementGroupCleaner pid=31692)\x1b[0m "

# lines seen in `graphrec train twhin --workers 2` on local Ray 2.60 (verbatim but for ids)
NOISE = [
    "Failed to query Ray Train Controller actor state. State API may be temporarily unavailable. "
    "Continuing to monitor.",
    "[2026-11-30 13:29:41,035 E 31606 31633] core_worker.cc:2465: Actor with class name: 'PreemptionWatcher' and ID: "
    "'30b94762e4f877191df9b20701000000' has constructor arguments in the object store and max_restarts > 0. If the "
    "arguments in the object store go out of scope or are lost, the actor restart will fail. See "
    "https://github.com/ray-project/ray/issues/53727 for more details.",
    "Token authentication is enabled for this Ray cluster. Set RAY_AUTH_MODE=disabled to opt out. For more "
    "information, see https://docs.ray.io/en/latest/ray-security/token-auth.html",
    "Reporting training result 1: TrainingReport(checkpoint=None, metrics={'epoch': 0, 'loss': 5.72}, "
    "validation=False) from rank 1",
]
KEEP = [
    "epoch 0: loss 5.7329, 57848 positives/s",  # graphrec's progress
    "rank 0: resumed after epoch 2",
    "Warning: The following resource request cannot be scheduled right now: {'CPU': 4.0}.",  # a real problem
    "A worker health check failed.",
    "Failed to query the object store",  # near-miss of a noise pattern
    "RuntimeError: [gloo/transport/tcp/pair.cc:553] Connection closed by peer [127.0.0.1]:44696.",
]


@pytest.mark.parametrize("line", NOISE)
def test_known_noise_is_dropped_with_or_without_prefix(line):
    assert is_ray_noise(line) and is_ray_noise(PREFIX + line)


@pytest.mark.parametrize("line", KEEP)
def test_real_lines_and_warnings_are_kept(line):
    assert not is_ray_noise(line)


def test_forwarded_batches_lose_only_the_noise():
    batch = {"pid": 31692, "ip": "127.0.0.1", "is_err": True, "lines": [NOISE[0], KEEP[0], NOISE[1], KEEP[2]]}
    assert filter_forwarded_lines(batch) == {**batch, "lines": [KEEP[0], KEEP[2]]}
    assert batch["lines"][0] == NOISE[0]  # the caller's batch is not modified
    assert filter_forwarded_lines({**batch, "lines": NOISE}) is None  # nothing left: nothing printed
    clean = {**batch, "lines": KEEP}
    assert filter_forwarded_lines(clean) is clean


def test_logger_filter_drops_noise_and_keeps_warnings(caplog):
    logger = logging.getLogger("graphrec.test.ray_noise")
    logger.addFilter(RayNoiseFilter())
    try:
        with caplog.at_level(logging.INFO, logger=logger.name):
            logger.warning(NOISE[0])
            logger.warning("disk almost full: %d%%", 97)
            logger.warning(NOISE[2])
    finally:
        logger.filters.clear()
    assert [r.getMessage() for r in caplog.records] == ["disk almost full: 97%"]


def test_debug_switch_turns_filtering_and_train_level(monkeypatch):
    monkeypatch.delenv(ray_env.DEBUG_ENV, raising=False)
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    assert not ray_env.debug_enabled() and ray_env.train_log_level() == "WARNING"
    env = ray_env.worker_env()
    assert ray_env.DEBUG_ENV not in env and "Sparse invariant checks" in env["PYTHONWARNINGS"]
    ray_env.set_debug()
    assert ray_env.debug_enabled() and ray_env.train_log_level() == "INFO"
    assert ray_env.worker_env() == {ray_env.DEBUG_ENV: "1"}  # workers see it; their warnings unfiltered
    monkeypatch.setenv(ray_env.DEBUG_ENV, "0")
    assert not ray_env.debug_enabled()


def test_worker_env_leaves_keys_of_a_submitted_job_alone(monkeypatch):
    monkeypatch.delenv(ray_env.DEBUG_ENV, raising=False)
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", '{"runtime_env": {"env_vars": {"PYTHONWARNINGS": "error"}}}')
    assert "PYTHONWARNINGS" not in ray_env.worker_env()  # Ray refuses to merge a key set twice


def test_cli_debug_sets_the_environment(monkeypatch):
    from graphrec.cli import main

    monkeypatch.delenv(ray_env.DEBUG_ENV, raising=False)
    assert main(["--version"]) == 0
    assert not ray_env.debug_enabled()
    assert main(["--debug", "generate", "--help"]) == 0
    assert ray_env.debug_enabled()


# End to end, a 2-worker run on local Ray shows graphrec's epoch lines and none of Ray's
# chatter: checked on the Ray runs the suite makes anyway (tests/train/test_twhin_train.py
# and test_pinsage_train.py, the killed-worker tests; tests.conftest.assert_quiet_ray_output).
