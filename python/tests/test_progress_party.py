"""Progress callbacks (a function, a tqdm bar) and distributed parties."""

import socket
import threading

import numpy as np
import pytest

import cryptflow


def test_progress_callback_counts_every_instruction(mnist, lenet):
    x, _ = mnist
    calls = []
    lenet.run(x, backend="porthos", progress=lambda done, total, layer: calls.append((done, total, layer)))
    assert calls, "the callback was called"
    done = [c[0] for c in calls]
    assert done == list(range(1, len(calls) + 1))
    assert calls[-1][0] == calls[-1][1]
    assert all(isinstance(c[2], str) for c in calls)


def test_progress_exception_is_raised_after_the_run(lenet):
    def fails(done, total, layer):
        raise KeyError("from the callback")

    with pytest.raises(KeyError, match="from the callback"):
        lenet.run(np.zeros((1, 1, 28, 28), np.float32), backend="cleartext", progress=fails)


def test_tqdm_bar(mnist, lenet):
    tqdm = pytest.importorskip("tqdm")
    x, _ = mnist
    with tqdm.tqdm(disable=False) as bar:
        lenet.run(x, backend="2pc", progress=bar)
        assert bar.total and bar.n == bar.total


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.parametrize("backend", ["porthos", "2pc"])
def test_distributed_parties_over_tls(tmp_path, mnist, lenet, backend):
    x, _ = mnist
    n = 2 if backend == "2pc" else 3
    lenet.save(tmp_path / "lenet")
    cryptflow.keygen(tmp_path / "keys", parties=n)
    peers = [f"127.0.0.1:{p}" for p in free_ports(n)]
    results, errors = {}, {}

    def party(i):
        try:
            p = cryptflow.Party(i, peers, tmp_path / "lenet", tmp_path / "keys", backend=backend, connect_timeout=30)
            results[i] = p.run(x if i == 1 else None)
        except Exception as e:  # noqa: BLE001 - reported below
            errors[i] = e

    threads = [threading.Thread(target=party, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    clear, _ = lenet.run(x, backend="cleartext")
    y, metrics = results[1]
    assert (y.argmax(1) == clear.argmax(1)).all()
    assert metrics["inferences"] == len(x) and metrics["bytes_total"] > 0
    assert results[0].output is None


def test_party_refuses_bad_arguments(tmp_path, lenet):
    lenet.save(tmp_path / "lenet")
    with pytest.raises(cryptflow.RunError, match="--peers needs 3 addresses"):
        cryptflow.Party(0, ["127.0.0.1:1"], tmp_path / "lenet", tmp_path / "keys").run()
