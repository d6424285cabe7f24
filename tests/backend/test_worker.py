import threading

from autoal_backend.worker import Worker


def test_events_during_a_round_coalesce_into_one_next_round():
    started, release = threading.Event(), threading.Event()
    runs: list[int] = []

    def run_round(project_id: int, request) -> None:
        runs.append(project_id)
        started.set()
        release.wait(10)

    worker = Worker(run_round)
    assert worker.submit(1, "ANNOTATION_CREATED") is True
    assert started.wait(10)
    # Ten events for project 1 while its round runs, and one for project 2.
    fresh = [worker.submit(1, "ANNOTATION_CREATED") for _ in range(10)]
    worker.submit(2, "START_TRAINING")
    assert fresh == [True] + [False] * 9
    assert worker.queue_depth == 2 and worker.running == 1
    release.set()
    assert worker.wait_idle(10)
    assert runs == [1, 1, 2]
    worker.stop()


def test_a_failing_round_does_not_kill_the_worker():
    errors: list[tuple[int, str]] = []
    runs: list[int] = []

    def run_round(project_id: int, request) -> None:
        runs.append(project_id)
        if project_id == 1:
            raise RuntimeError("Label Studio is down")

    worker = Worker(run_round, lambda pid, exc, request: errors.append((pid, str(exc))))
    worker.submit(1, "x")
    assert worker.wait_idle(10)
    worker.submit(2, "x")
    assert worker.wait_idle(10)
    assert runs == [1, 2] and errors == [(1, "Label Studio is down")]
    worker.stop()


def test_no_thread_until_the_first_submit():
    worker = Worker(lambda pid, request: None)
    assert worker._thread is None
    worker.submit(1, "x")
    assert worker._thread is not None
    worker.stop()
