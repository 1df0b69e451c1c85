"""A peer, side by side: SecretFlow-SPU running a BERT encoder the way PUMA does, on this machine.

Runs one forward pass of a BERT encoder with BertForSequenceClassification's head (pooler and
classifier; seeded random weights) under SPU's ABY3 protocol over
the 64-bit ring (FM64), three parties, with PUMA's runtime settings and approximations, and
reports the wall time of one inference (compilation apart), the bytes sent by all parties, peak
resident memory, the error against the same model in plain JAX, the CPU, and the PUMA paper's
figure beside it. With --cryptflow BIN it also runs cryptflow (Porthos) on the same shapes in
the same run and prints both side by side.

    python -m venv /work/venv-spu && /work/venv-spu/bin/pip install -r bench/requirements-spu.txt
    /work/venv-spu/bin/python bench/spu_bert.py --layers 2 --hidden 128 --heads 2      # BERT-tiny
    /work/venv-spu/bin/python bench/spu_bert.py                                        # BERT-base
    /work/venv-spu/bin/python bench/spu_bert.py --cryptflow target/release/cryptflow   # and ours

The parties. By default (--parties processes) the three SPU parties are three OS processes
linked by SPU's own brpc links over 127.0.0.1 (what spu.utils.distributed / nodectl start,
without the Python RPC layer): the byte counts are those of SPU's link layer (each party's
"Link details: total send bytes" from its profile, summed over the parties). --parties
simulator uses SPU's in-process simulator (threads linked in memory); its bytes come from the
same per-party link statistics. The driver (this process) plays the model owner and the client:
it makes the secret shares of the weights and of the client's input (outside the timed run)
and reconstructs the output.

The embedding. --embedding puma (default) does what PUMA's benchmark does: the client's token
ids are secret-shared and the model calls jnp.take(table, ids), which SPU turns into a one-hot
row per token by secure equality with a public iota, multiplied with the owner's secret table
(PUMA's "secure embedding"). --embedding client-onehot lets the client one-hot encode its ids
in the clear and share the one-hot matrix [seq, vocab]; the lookup is then one secret matrix
product (the design cryptflow uses). Position and token-type embeddings are added from public
positions (ids 0..seq-1, token type 0), as in the PUMA benchmark, where they are public.

PUMA's settings (AntCPLab/puma_benchmarks, 3pc.json): protocol ABY3, field FM64,
enable_pphlo_profile and enable_hal_profile on, fxp_exp_mode 0 (Taylor) with fxp_exp_iters 5;
compiler option enable_optimize_denominator_with_broadcast. PUMA's approximations: softmax as
exp(x - max) zeroed below -14 (exp by SPU's Taylor series), divided by the sum; GELU as the
paper's piecewise polynomial (0 below -4, a cubic on [-4, -1.95), a degree-6 polynomial on
[-1.95, 3], x above 3); LayerNorm with SPU's rsqrt. The plaintext reference is the exact
model (erf GELU, exact softmax) in float32 JAX; the error against the plaintext model with
PUMA's approximations is printed too, to tell approximation error from fixed-point error.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import multiprocessing as mp
import os
import platform
import re
import resource
import shutil
import socket
import subprocess
import sys
import time
import traceback

import numpy as np

# The PUMA paper (Dong et al., "Puma: Secure Inference of LLaMA-7B in Five Minutes", 2023),
# BERT-base, 128 tokens, three servers on a LAN: the figure issue #12 cites.
PUMA_PAPER = {"model": "bert-base", "seq": 128, "seconds": 42.0, "bytes": 3.59e9,
              "setting": "3 servers (ABY3, FM64), LAN; puma_benchmarks README, GLUE-CoLA"}

VOCAB = 30522  # BERT's WordPiece vocabulary (bert-base-uncased)
MAX_POSITIONS = 512
TYPE_VOCAB = 2


# ---------------------------------------------------------------------------------------------
# Machine facts


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def simd_level() -> str:
    flags = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    for level in ("avx512f", "avx2", "avx", "sse4_2"):
        if level in flags:
            return level
    return "none"


def peak_rss_bytes() -> int:
    """VmHWM of this process (bytes), falling back to ru_maxrss."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


# ---------------------------------------------------------------------------------------------
# The model: a BERT encoder in plain jax.numpy (no Flax module, so no hub download and no
# version coupling with transformers), with PUMA's approximations switchable.


def make_params(layers: int, hidden: int, heads: int, inter: int, vocab: int, seed: int,
                classes: int = 0) -> dict:
    """Seeded random weights in BERT's initialisation (normal, std 0.02), float32; with
    classes > 0 also the pooler and a classifier (BertForSequenceClassification's head)."""
    rng = np.random.default_rng(seed)

    def w(*shape):
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    def ln():
        return {"g": (1.0 + rng.standard_normal(hidden) * 0.02).astype(np.float32), "b": w(hidden)}

    params = {
        "word": w(vocab, hidden),
        "pos": w(MAX_POSITIONS, hidden),
        "type": w(TYPE_VOCAB, hidden),
        "ln_emb": ln(),
        "layers": [],
    }
    for _ in range(layers):
        params["layers"].append({
            "q": w(hidden, hidden), "bq": w(hidden),
            "k": w(hidden, hidden), "bk": w(hidden),
            "v": w(hidden, hidden), "bv": w(hidden),
            "o": w(hidden, hidden), "bo": w(hidden),
            "ln1": ln(),
            "fc1": w(hidden, inter), "b1": w(inter),
            "fc2": w(inter, hidden), "b2": w(hidden),
            "ln2": ln(),
        })
    if classes:
        params["pooler"] = {"w": w(hidden, hidden), "b": w(hidden)}
        params["classifier"] = {"w": w(hidden, classes), "b": w(classes)}
    return params


# PUMA's GELU: a cubic on [-4, -1.95) and an even-plus-linear degree-6 polynomial on
# [-1.95, 3] (coefficients from the paper, lowest degree first), 0 below -4, x above 3.
GELU_CUBIC = (-0.5054031199708174, -0.42226581151983866, -0.11807612951181953, -0.011034134030615728)
GELU_POLY6 = (0.008526321541038084, 0.5, 0.3603292692789629, 0.0, -0.037688200365904236, 0.0,
              0.0018067462606141187)


def gelu_puma(x):
    import jax.numpy as jnp

    x2 = x * x
    x3 = x2 * x
    x4 = x2 * x2
    x6 = x3 * x3
    cubic = GELU_CUBIC[0] + GELU_CUBIC[1] * x + GELU_CUBIC[2] * x2 + GELU_CUBIC[3] * x3
    poly6 = (GELU_POLY6[0] + GELU_POLY6[1] * x + GELU_POLY6[2] * x2 + GELU_POLY6[4] * x4
             + GELU_POLY6[6] * x6)
    below_4 = x < -4.0
    below_195 = x < -1.95
    above_3 = x > 3.0
    in_cubic = jnp.logical_xor(below_4, below_195)              # -4 <= x < -1.95
    in_poly6 = jnp.logical_not(jnp.logical_or(below_195, above_3))  # -1.95 <= x <= 3
    return above_3 * x + in_cubic * cubic + in_poly6 * poly6


def softmax_puma(x):
    import jax.numpy as jnp

    x = x - jnp.max(x, axis=-1, keepdims=True)
    e = jnp.exp(x) * (x > -14.0)  # the exponential of a large negative is clipped to zero
    return e / jnp.sum(e, axis=-1, keepdims=True)


def gelu_exact(x):
    import jax

    return jax.nn.gelu(x, approximate=False)


def softmax_exact(x):
    import jax

    return jax.nn.softmax(x, axis=-1)


def layer_norm(x, p, eps=1e-12):
    import jax
    import jax.numpy as jnp

    mean = jnp.mean(x, axis=-1, keepdims=True)
    centred = x - mean
    var = jnp.mean(centred * centred, axis=-1, keepdims=True)
    return centred * jax.lax.rsqrt(var + eps) * p["g"] + p["b"]


def bert_encoder(params, tokens, mask, *, heads: int, embedding: str, approx: str):
    """tokens: int32 ids [seq] (embedding 'puma') or a float one-hot [seq, vocab]
    ('client-onehot'); mask: float [seq], 1 for a real token and 0 for padding.
    Returns the last hidden state [seq, hidden] and, when params has a pooler, the logits of
    the classification head (tanh pooler on the first token, then a dense layer)."""
    import jax.numpy as jnp

    gelu = gelu_puma if approx == "puma" else gelu_exact
    softmax = softmax_puma if approx == "puma" else softmax_exact

    if embedding == "puma":
        seq = tokens.shape[0]
        words = jnp.take(params["word"], tokens, axis=0)
    else:
        seq = tokens.shape[0]
        words = tokens @ params["word"]
    x = words + params["pos"][:seq] + params["type"][0]
    x = layer_norm(x, params["ln_emb"])

    hidden = x.shape[-1]
    dh = hidden // heads
    # The extended attention mask, added to the scores: 0 for a token, -10000 for padding.
    additive = ((1.0 - mask) * -10000.0)[None, None, :]
    scale = 1.0 / math.sqrt(dh)
    for p in params["layers"]:
        def split(t):
            return t.reshape(seq, heads, dh).transpose(1, 0, 2)  # [heads, seq, dh]

        q = split(x @ p["q"] + p["bq"])
        k = split(x @ p["k"] + p["bk"])
        v = split(x @ p["v"] + p["bv"])
        scores = jnp.einsum("hqd,hkd->hqk", q, k) * scale + additive
        probs = softmax(scores)
        ctx = jnp.einsum("hqk,hkd->hqd", probs, v).transpose(1, 0, 2).reshape(seq, hidden)
        x = layer_norm(x + ctx @ p["o"] + p["bo"], p["ln1"])
        h = gelu(x @ p["fc1"] + p["b1"])
        x = layer_norm(x + h @ p["fc2"] + p["b2"], p["ln2"])
    if "pooler" not in params:
        return x
    pooled = jnp.tanh(x[0] @ params["pooler"]["w"] + params["pooler"]["b"])
    return x, pooled @ params["classifier"]["w"] + params["classifier"]["b"]


# ---------------------------------------------------------------------------------------------
# SPU


def runtime_config(args):
    import spu.libspu as libspu

    cfg = libspu.RuntimeConfig(protocol=libspu.ProtocolKind.ABY3, field=libspu.FieldType.FM64)
    cfg.enable_pphlo_profile = True
    cfg.enable_hal_profile = True
    cfg.fxp_exp_mode = libspu.RuntimeConfig.ExpMode.EXP_DEFAULT  # 0: Taylor
    cfg.fxp_exp_iters = args.exp_iters
    return cfg


def config_summary(cfg) -> dict:
    return {
        "protocol": "ABY3", "field": "FM64",
        "fxp_fraction_bits": cfg.fxp_fraction_bits or 18,  # 0 selects the field's default, 18
        "fxp_exp_mode": int(cfg.fxp_exp_mode), "fxp_exp_iters": cfg.fxp_exp_iters,
        "enable_pphlo_profile": cfg.enable_pphlo_profile,
        "enable_hal_profile": cfg.enable_hal_profile,
        "copts.enable_optimize_denominator_with_broadcast": True,
    }


LINK_RE = re.compile(r"Link details: total send bytes (\d+), recv bytes (\d+), send actions (\d+), "
                     r"recv actions (\d+)")
EXEC_RE = re.compile(r"\[Profiling\] SPU execution (\S+) completed, input processing took ([\d.e-]+)s, "
                     r"execution took ([\d.e-]+)s, output processing took ([\d.e-]+)s")


def parse_profile(text: str) -> dict:
    out = {}
    links = LINK_RE.findall(text)
    if links:
        sb, rb, sa, ra = (int(v) for v in links[-1])
        out.update(send_bytes=sb, recv_bytes=rb, send_actions=sa, recv_actions=ra)
    execs = EXEC_RE.findall(text)
    if execs:
        out["spu_execution_seconds"] = float(execs[-1][2])
    return out


def party_main(rank: int, ports: list[int], cfg_bytes: bytes, conn, log_path: str, barrier):
    """One SPU party in its own process: brpc links to the two others over 127.0.0.1."""
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    try:
        import spu.api as spu_api
        import spu.libspu as libspu

        cfg = libspu.RuntimeConfig()
        cfg.ParseFromString(cfg_bytes)
        desc = libspu.link.Desc()
        desc.recv_timeout_ms = 4 * 3600 * 1000  # a party may wait long for a slow peer on 2 cores
        desc.http_max_payload_size = 64 * 1024 * 1024
        desc.connect_retry_times = 120
        desc.connect_retry_interval_ms = 500
        for r, port in enumerate(ports):
            desc.add_party(f"party{r}", f"127.0.0.1:{port}")
        lctx = libspu.link.create_brpc(desc, rank)
        rt = spu_api.Runtime(lctx, cfg)
        conn.send(("ready", rank))

        kind, exe_bytes = conn.recv()
        assert kind == "exe"
        exe = libspu.Executable()
        exe.ParseFromString(exe_bytes)
        t_infeed = 0.0
        while True:
            msg = conn.recv()
            if msg[0] == "var":
                _, name, meta, chunks = msg
                share = libspu.Share()
                share.meta = meta
                share.share_chunks = chunks
                t0 = time.perf_counter()
                rt.set_var(name, share)
                t_infeed += time.perf_counter() - t0
                del share, chunks
            elif msg[0] == "run":
                break
        barrier.wait()
        t0 = time.perf_counter()
        rt.run(exe)
        t_run = time.perf_counter() - t0
        outs = []
        for name in exe.output_names:
            s = rt.get_var(name)
            outs.append((s.meta, list(s.share_chunks)))
        sys.stdout.flush()
        conn.send(("done", {"run_seconds": t_run, "infeed_seconds": t_infeed,
                            "peak_rss_bytes": peak_rss_bytes()}, outs))
        lctx.stop_link()
    except BaseException:
        conn.send(("error", traceback.format_exc()))
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def run_spu_processes(exe, flat_inputs, cfg, io, out_dir: str, log):
    """Three party processes; the driver deals the shares and collects the output shares."""
    import spu.libspu as libspu

    ctx = mp.get_context("spawn")
    ports = free_ports(3)
    barrier = ctx.Barrier(3)
    procs, conns, logs = [], [], []
    for rank in range(3):
        parent, child = ctx.Pipe()
        log_path = os.path.join(out_dir, f"spu-party{rank}.log")
        p = ctx.Process(target=party_main,
                        args=(rank, ports, cfg.SerializeToString(), child, log_path, barrier))
        p.start()
        procs.append(p)
        conns.append(parent)
        logs.append(log_path)

    def recv(rank):
        msg = conns[rank].recv()
        if msg[0] == "error":
            for p in procs:
                p.kill()
            raise RuntimeError(f"SPU party {rank} failed:\n{msg[1]}")
        return msg

    try:
        for rank in range(3):
            recv(rank)
        log(f"three SPU parties up (brpc on 127.0.0.1 ports {ports})")
        exe_bytes = exe.SerializeToString()
        for c in conns:
            c.send(("exe", exe_bytes))
        t0 = time.perf_counter()
        for name, x in zip(exe.input_names, flat_inputs):
            shares = io.make_shares(np.asarray(x), libspu.Visibility.VIS_SECRET)
            for rank, c in enumerate(conns):
                c.send(("var", name, shares[rank].meta, list(shares[rank].share_chunks)))
            del shares
        for c in conns:
            c.send(("run",))
        share_seconds = time.perf_counter() - t0
        log(f"shares dealt in {share_seconds:.1f} s; running")
        t0 = time.perf_counter()
        results = [recv(rank) for rank in range(3)]
        driver_seconds = time.perf_counter() - t0
        for p in procs:
            p.join(timeout=60)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()

    party_stats = []
    for rank, (_, stats, _) in enumerate(results):
        with open(logs[rank], errors="replace") as f:
            stats.update(parse_profile(f.read()))
        party_stats.append(stats)
    outputs = []
    for k in range(len(exe.output_names)):
        shares = []
        for rank in range(3):
            meta, chunks = results[rank][2][k]
            s = libspu.Share()
            s.meta = meta
            s.share_chunks = chunks
            shares.append(s)
        outputs.append(io.reconstruct(shares))
    return outputs, party_stats, share_seconds, driver_seconds, logs


def run_spu_simulator(exe, flat_inputs, cfg, io, out_dir: str, log):
    """SPU's in-process simulator (three threads, links in memory), profiling on every rank."""
    import threading

    import spu.api as spu_api
    import spu.libspu as libspu

    t0 = time.perf_counter()
    shares = [io.make_shares(np.asarray(x), libspu.Visibility.VIS_SECRET) for x in flat_inputs]
    share_seconds = time.perf_counter() - t0
    desc = libspu.link.Desc()
    for rank in range(3):
        desc.add_party(f"party{rank}", f"thread_{rank}")
    barrier = threading.Barrier(3)
    results: list = [None] * 3

    def party(rank):
        try:
            lctx = libspu.link.create_mem(desc, rank)
            rt = spu_api.Runtime(lctx, cfg)
            for name, s in zip(exe.input_names, shares):
                rt.set_var(name, s[rank])
            barrier.wait()
            t = time.perf_counter()
            rt.run(exe)
            t = time.perf_counter() - t
            results[rank] = ({"run_seconds": t}, [rt.get_var(n) for n in exe.output_names])
        except BaseException:
            results[rank] = traceback.format_exc()

    # spdlog writes to file descriptor 1: capture it for the link statistics.
    log_path = os.path.join(out_dir, "spu-simulator.log")
    sys.stdout.flush()
    saved = os.dup(1)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    t0 = time.perf_counter()
    try:
        threads = [threading.Thread(target=party, args=(r,)) for r in range(3)]
        [t.start() for t in threads]
        [t.join() for t in threads]
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(fd)
    driver_seconds = time.perf_counter() - t0
    for r in results:
        if isinstance(r, str):
            raise RuntimeError(f"SPU simulator failed:\n{r}")
    # Each rank logs its own "Link details" line, in completion order: attribute them in order.
    with open(log_path, errors="replace") as f:
        text = f.read()
    links = LINK_RE.findall(text)
    party_stats = []
    for rank in range(3):
        stats = dict(results[rank][0])
        if rank < len(links):
            sb, rb, sa, ra = (int(v) for v in links[rank])
            stats.update(send_bytes=sb, recv_bytes=rb, send_actions=sa, recv_actions=ra)
        # One process holds all three parties (and the driver): its peak, reported once.
        stats["peak_rss_bytes"] = peak_rss_bytes() if rank == 0 else None
        party_stats.append(stats)
    outputs = [io.reconstruct([results[r][1][k] for r in range(3)]) for k in range(len(exe.output_names))]
    return outputs, party_stats, share_seconds, driver_seconds, [log_path]


# ---------------------------------------------------------------------------------------------
# cryptflow on the same shapes


def zoo_name(layers: int, hidden: int, heads: int) -> str | None:
    return {(12, 768, 12): "bert-base", (2, 128, 2): "bert-tiny", (4, 256, 4): "bert-mini"}.get(
        (layers, hidden, heads))


def run_cryptflow(args, ids: np.ndarray, mask: np.ndarray, out_dir: str, log) -> dict:
    """cryptflow zoo NAME --seq L, compile, run --backend porthos --metrics; returns the metrics."""
    binary = os.path.abspath(args.cryptflow)
    d = os.path.join(out_dir, "cryptflow")
    os.makedirs(d, exist_ok=True)
    compiled = os.path.join(d, "compiled")
    if args.cryptflow_onnx:
        name, onnx_path = os.path.basename(args.cryptflow_onnx), args.cryptflow_onnx
    else:
        name = args.cryptflow_network or zoo_name(args.layers, args.hidden, args.heads)
        if name is None:
            raise RuntimeError("no zoo network of these shapes: give --cryptflow-network NAME")
        onnx_path = os.path.join(d, f"{name}.onnx")

    def sh(cmd):
        log("$ " + " ".join(cmd))
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        dt = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return dt, proc

    if not args.cryptflow_onnx:
        sh([binary, "zoo", name, "--seq", str(args.seq), "--seed", str(args.seed), "-o", onnx_path])
    if os.path.isdir(compiled):
        shutil.rmtree(compiled)
    compile_seconds, _ = sh([binary, "compile", onnx_path, "-o", compiled])
    with open(os.path.join(compiled, "program.json")) as f:
        program = json.load(f)["program"]
    inputs = []
    seen = set()
    for inp in program["inputs"]:
        if inp.get("owner") != "Client" or inp["name"] in seen:
            continue
        seen.add(inp["name"])
        shape = inp["shape"][:-1] if inp.get("one_hot") else inp["shape"]
        n = inp["name"].lower()
        integer = inp.get("integer") or n.endswith("ids")
        if "mask" in n:
            value = mask.reshape(shape).astype(np.int64 if inp.get("integer") else np.float32)
        elif integer and "type" in n:
            value = np.zeros(shape, dtype=np.int64)
        elif integer and "pos" in n:
            value = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)
        elif integer:
            value = ids.reshape(shape).astype(np.int64)
        else:  # a float input of another kind (say, a given model's embeddings): seeded noise
            value = np.random.default_rng(args.seed).standard_normal(shape).astype(np.float32)
        path = os.path.join(d, f"input-{len(inputs)}.npy")
        np.save(path, value)
        inputs.append((inp["name"], path))
    metrics_path = os.path.join(d, "metrics.json")
    cmd = [binary, "run", compiled, "--backend", "porthos", "-o", os.path.join(d, "y.npy"),
           "--metrics", metrics_path]
    for n, path in inputs:
        cmd += ["--input", f"{n}={path}"]
    run_seconds, _ = sh(cmd)
    with open(metrics_path) as f:
        metrics = json.load(f)
    # Session set-up and the sharing of the weights are layers of their own in the metrics:
    # SPU's figures leave the dealing of input shares out, so give cryptflow's without them too.
    setup = [l for l in metrics.get("layers", []) if str(l.get("layer", "")).startswith("(")]
    setup_bytes = sum(l.get("bytes_sent", 0) for l in setup)
    setup_seconds = sum(l.get("seconds", 0.0) for l in setup)
    return {
        "setup_layers": {l["layer"]: {"seconds": l.get("seconds"), "bytes_sent": l.get("bytes_sent")}
                         for l in setup},
        "bytes_total_without_setup": (metrics["bytes_total"] - setup_bytes
                                      if metrics.get("bytes_total") is not None else None),
        "seconds_without_setup": (metrics["seconds"] - setup_seconds
                                  if metrics.get("seconds") is not None else None),
        "framework": "cryptflow", "backend": metrics.get("backend", "porthos"), "network": name,
        "compile_seconds": compile_seconds, "command_seconds": run_seconds,
        "seconds": metrics.get("seconds_per_inference", metrics.get("seconds")),
        "bytes_total": metrics.get("bytes_total"), "bytes_sent": metrics.get("bytes_sent"),
        "rounds": metrics.get("rounds"), "peak_rss_bytes": metrics.get("peak_rss_bytes"),
        "metrics_file": metrics_path,
    }


# ---------------------------------------------------------------------------------------------


def fmt_bytes(b) -> str:
    if b is None:
        return "-"
    if isinstance(b, list):
        b = sum(x for x in b if x is not None)
    return f"{b / 1e9:.3f} GB" if b >= 1e8 else f"{b / 1e6:.2f} MB"


def fmt_s(s) -> str:
    return "-" if s is None else f"{s:.2f} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seq", type=int, default=128, help="sequence length (default 128)")
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--intermediate", type=int, default=None, help="default 4 x hidden")
    ap.add_argument("--vocab", type=int, default=VOCAB)
    ap.add_argument("--classes", type=int, default=2,
                    help="classes of the sequence-classification head (pooler + classifier, as "
                         "PUMA's benchmark and cryptflow's zoo BERTs have); 0: no head (default 2)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the weights and the input")
    ap.add_argument("--padding", type=int, default=0,
                    help="trailing padding tokens (mask 0) of the input (default 0: all real)")
    ap.add_argument("--embedding", choices=["puma", "client-onehot"], default="puma")
    ap.add_argument("--parties", choices=["processes", "simulator"], default="processes")
    ap.add_argument("--exp-iters", type=int, default=5, help="fxp_exp_iters (PUMA: 5)")
    ap.add_argument("--cryptflow", metavar="BIN", help="also run cryptflow (Porthos) on the same shapes")
    ap.add_argument("--cryptflow-network", metavar="NAME",
                    help="cryptflow zoo network (default from the shapes: bert-base|bert-tiny|bert-mini)")
    ap.add_argument("--cryptflow-onnx", metavar="MODEL.onnx",
                    help="give cryptflow this ONNX model instead of writing one with `cryptflow zoo`")
    ap.add_argument("-o", "--out-dir", default="bench-out/spu-bert",
                    help="logs, per-party profiles and the JSON report (default bench-out/spu-bert)")
    ap.add_argument("--json", help="also write the JSON line to this file")
    args = ap.parse_args()
    inter = args.intermediate or 4 * args.hidden
    load_start = os.getloadavg()
    if args.hidden % args.heads:
        raise SystemExit("--hidden must be a multiple of --heads")
    os.makedirs(args.out_dir, exist_ok=True)

    def log(msg):
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    import jax
    import spu
    import spu.api as spu_api
    import spu.libspu as libspu
    import spu.utils.frontend as spu_fe

    jax.config.update("jax_platforms", "cpu")
    log(f"BERT {args.layers} layers, hidden {args.hidden}, {args.heads} heads, intermediate {inter}, "
        f"vocab {args.vocab}, seq {args.seq}; SPU {spu.__version__}, parties: {args.parties}")

    params = make_params(args.layers, args.hidden, args.heads, inter, args.vocab, args.seed,
                         classes=args.classes)
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(params))
    rng = np.random.default_rng(args.seed + 1)
    ids = rng.integers(0, args.vocab, size=args.seq).astype(np.int32)
    mask = np.ones(args.seq, dtype=np.float32)
    if args.padding:
        mask[args.seq - args.padding:] = 0.0
    if args.embedding == "puma":
        tokens = ids
    else:
        tokens = np.zeros((args.seq, args.vocab), dtype=np.float32)
        tokens[np.arange(args.seq), ids] = 1.0

    def model(approx):
        return lambda p, t, m: bert_encoder(p, t, m, heads=args.heads, embedding=args.embedding,
                                            approx=approx)

    # Plaintext references: the exact model, and the model with PUMA's approximations.
    t0 = time.perf_counter()
    def as_list(r):
        return [np.asarray(v, dtype=np.float64) for v in (r if isinstance(r, tuple) else (r,))]

    ref_exact = as_list(jax.jit(model("exact"))(params, tokens, mask))
    ref_puma = as_list(jax.jit(model("puma"))(params, tokens, mask))
    log(f"plaintext JAX references in {time.perf_counter() - t0:.1f} s ({n_params / 1e6:.1f} M parameters)")

    cfg = runtime_config(args)
    copts = libspu.CompilerOptions()
    copts.enable_optimize_denominator_with_broadcast = True
    fn = model("puma")
    args_tuple = (params, tokens, mask)
    flat, _ = jax.tree_util.tree_flatten((args_tuple, {}))
    in_names = [f"in{i}" for i in range(len(flat))]
    t0 = time.perf_counter()
    exe, _ = spu_fe.compile(spu_fe.Kind.JAX, fn, args_tuple, {}, in_names,
                            [libspu.Visibility.VIS_SECRET] * len(flat),
                            lambda outs: [f"out{i}" for i in range(len(outs))], copts=copts)
    compile_seconds = time.perf_counter() - t0
    log(f"SPU compilation (JAX trace, XLA lowering, SPU compiler) {compile_seconds:.1f} s")

    io = spu_api.Io(3, cfg)
    runner = run_spu_processes if args.parties == "processes" else run_spu_simulator
    outputs, party_stats, share_seconds, driver_seconds, logs = runner(exe, flat, cfg, io, args.out_dir, log)
    outs = [np.asarray(o, dtype=np.float64) for o in outputs]
    out, ref_e, ref_p = outs[0], ref_exact[0], ref_puma[0]

    def cos(a, b):
        a, b = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
        return float(np.min(np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))

    sent = [s.get("send_bytes") for s in party_stats]
    result = {
        "framework": "spu",
        "spu_version": spu.__version__,
        "protocol": "ABY3",
        "field": "FM64",
        "parties": ("3 processes, SPU brpc links on 127.0.0.1" if args.parties == "processes"
                    else "SPU in-process simulator (3 threads, in-memory links)"),
        "model": zoo_name(args.layers, args.hidden, args.heads) or "bert",
        "seq": args.seq, "layers": args.layers, "hidden": args.hidden, "heads": args.heads,
        "intermediate": inter, "vocab": args.vocab, "parameters": n_params, "padding": args.padding,
        "embedding": args.embedding,
        "config": config_summary(cfg),
        "compile_seconds": compile_seconds,
        "share_seconds": share_seconds,
        "seconds": max(s["run_seconds"] for s in party_stats),
        "seconds_per_party": [s["run_seconds"] for s in party_stats],
        "spu_execution_seconds": [s.get("spu_execution_seconds") for s in party_stats],
        "driver_seconds": driver_seconds,
        "bytes_sent": sent,
        "bytes_total": sum(sent) if all(b is not None for b in sent) else None,
        "send_actions": [s.get("send_actions") for s in party_stats],
        "rounds": None,  # SPU reports messages (send actions) per party, not rounds
        "peak_rss_bytes": [s.get("peak_rss_bytes") for s in party_stats],
        "driver_peak_rss_bytes": peak_rss_bytes(),
        "classes": args.classes,
        "max_abs_err": float(np.max(np.abs(out - ref_e))),
        "mean_abs_err": float(np.mean(np.abs(out - ref_e))),
        "max_abs_err_vs_puma_plaintext": float(np.max(np.abs(out - ref_p))),
        "max_abs_err_puma_plaintext_vs_exact": float(np.max(np.abs(ref_p - ref_e))),
        "min_cosine_per_token": cos(out, ref_e),
        "output_max_abs": float(np.max(np.abs(ref_e))),
        "logits": outs[1].tolist() if len(outs) > 1 else None,
        "logits_plaintext": ref_exact[1].tolist() if len(outs) > 1 else None,
        "logits_max_abs_err": float(np.max(np.abs(outs[1] - ref_exact[1]))) if len(outs) > 1 else None,
        "cpu_model": cpu_model(),
        "simd": simd_level(),
        "cores": os.cpu_count(),
        "load_average_start": load_start,
        "load_average_end": os.getloadavg(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "paper_puma": PUMA_PAPER,
        "logs": logs,
    }
    log(f"SPU: {result['seconds']:.2f} s, {fmt_bytes(result['bytes_total'])}, "
        f"max abs error {result['max_abs_err']:.2e}")

    if args.cryptflow:
        try:
            result["cryptflow"] = run_cryptflow(args, ids, mask, args.out_dir, log)
        except Exception as e:  # noqa: BLE001 - reported beside the SPU figures
            log(f"cryptflow run failed: {e}")
            result["cryptflow"] = {"error": str(e)}

    # The human-readable table.
    cf = result.get("cryptflow") or {}
    base = result["model"] == "bert-base" and args.seq == 128
    rows = [
        ("time of one inference", fmt_s(result["seconds"]), fmt_s(cf.get("seconds")),
         fmt_s(PUMA_PAPER["seconds"]) if base else "-"),
        ("bytes sent (all parties)", fmt_bytes(result["bytes_total"]), fmt_bytes(cf.get("bytes_total")),
         fmt_bytes(PUMA_PAPER["bytes"]) if base else "-"),
        ("rounds", "- (messages: " + "/".join(str(a) for a in result["send_actions"]) + ")",
         str(cf.get("rounds", "-")), "-"),
        ("compile", fmt_s(compile_seconds), fmt_s(cf.get("compile_seconds")), "-"),
        ("peak RSS", " + ".join(fmt_bytes(b) for b in result["peak_rss_bytes"] if b) or "-",
         fmt_bytes(cf.get("peak_rss_bytes")) if cf.get("peak_rss_bytes") else "-", "-"),
    ]
    if cf.get("bytes_total_without_setup") is not None:
        rows.insert(2, ("  without set-up and weight sharing", "(dealing shares: not on SPU's links)",
                        fmt_bytes(cf["bytes_total_without_setup"]) + ", "
                        + fmt_s(cf.get("seconds_without_setup")), "-"))
    print(f"\nBERT {args.layers}x{args.hidden}, {args.heads} heads, seq {args.seq}; "
          f"{result['cpu_model']} ({result['simd']}, {result['cores']} cores); {result['date']}")
    print(f"SPU {spu.__version__} ABY3/FM64, {result['parties']}, embedding {args.embedding}; "
          f"load average {load_start[0]:.1f} at the start, {result['load_average_end'][0]:.1f} at the end")
    header = ("", "SPU (PUMA settings)", "cryptflow porthos", "PUMA paper (3 servers)")
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(4)]
    for r in [header] + rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))
    print(f"SPU vs plaintext JAX (exact GELU/softmax): max abs error {result['max_abs_err']:.3e}, "
          f"mean {result['mean_abs_err']:.3e}, min cosine per token {result['min_cosine_per_token']:.5f} "
          f"(output max |x| {result['output_max_abs']:.2f}); vs plaintext with PUMA's approximations "
          f"{result['max_abs_err_vs_puma_plaintext']:.3e} (the last hidden state)")
    if result["logits"] is not None:
        print(f"logits: SPU {np.round(result['logits'], 4).tolist()}, plaintext "
              f"{np.round(result['logits_plaintext'], 4).tolist()}, max abs error "
              f"{result['logits_max_abs_err']:.3e}; argmax "
              f"{'equal' if np.argmax(result['logits']) == np.argmax(result['logits_plaintext']) else 'DIFFERS'}")
    if cf.get("error"):
        print(f"cryptflow: {cf['error'].splitlines()[0]}")
    line = json.dumps(result)
    print(line)
    with open(os.path.join(args.out_dir, "result.json"), "w") as f:
        f.write(line + "\n")
    if args.json:
        with open(args.json, "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
