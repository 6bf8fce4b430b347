"""`minigpt serve` under load: batched against one request at a time, and time to first token.

    python benchmarks/serving.py --ckpt_path lightning_logs/version_0/checkpoints/last.ckpt

Three servers of the same checkpoint run side by side on free localhost ports: continuous
batching (--max_rows 16, the default), waves (--batching waves: a request waits for the running
batch to finish) and one request at a time (--max_rows 1). At 1, 4 and 16 concurrent clients,
each client sends --requests requests one after another (non-streamed /v1/completions, seeded
sampling, answer lengths cycling through --lengths, so requests end at different times); the
servers take turns, in a different order each repeat. Figures: generated tokens per second over
all requests (median of the repeats, from the responses' usage), and p50/p95 latency of a request
(every request of every repeat).

Time to first token: a streamed request to the idle batched server, from sending it to the first
chunk of text, against (a) `TextGenerator.stream` in this process on the same checkpoint (the
computation `minigpt generate` does once its model is loaded) and (b) a `minigpt generate`
process from its start (import and load included). Everything runs with one torch thread
(OMP_NUM_THREADS=1), so the processes do not fight over the 2 cores' OpenMP threads.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx

os.environ["OMP_NUM_THREADS"] = "1"  # before torch is imported, here and in every child

import torch

from minigpt.checkpoint import Checkpoint, load_checkpoint
from minigpt.sampling import Sampling

REPO = Path(__file__).resolve().parents[1]
PROMPTS = ["ROMEO:", "JULIET:\nO Romeo, Romeo!", "First Citizen:\n", "KING RICHARD III:\nNow is the winter", "NURSE:"]
SERVERS = {
    "continuous": ["--max_rows=16"],
    "waves": ["--max_rows=16", "--batching=waves"],
    "one at a time": ["--max_rows=1"],
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def server(ckpt_path: str, options: list[str]) -> Iterator[str]:
    """A `minigpt serve` process on a free port, its URL once /health answers."""
    port = free_port()
    command = [sys.executable, "-m", "minigpt", "serve", f"--ckpt_path={ckpt_path}", f"--port={port}"]
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [*command, "--max_queue=1000", "--model_name=m", *options], stdout=log, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 120
            while True:
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise SystemExit(f"minigpt serve did not start:\n{log.read().decode(errors='replace')}")
                try:
                    if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=30)


def load(url: str, clients: int, requests: int, lengths: list[int]) -> tuple[float, list[float]]:
    """`clients` threads each sending `requests` completions in turn: (generated tokens / s, latencies)."""
    latencies: list[float] = []
    tokens = [0]
    lock = threading.Lock()

    def client(number: int) -> None:
        with httpx.Client(timeout=600) as http:
            for turn in range(requests):
                index = number * requests + turn
                body = {
                    "model": "m",
                    "prompt": PROMPTS[index % len(PROMPTS)],
                    "max_tokens": lengths[index % len(lengths)],
                    "temperature": 0.8,
                    "seed": index,
                }
                start = time.perf_counter()
                response = http.post(f"{url}/v1/completions", json=body)
                elapsed = time.perf_counter() - start
                response.raise_for_status()
                with lock:
                    latencies.append(elapsed)
                    tokens[0] += response.json()["usage"]["completion_tokens"]

    threads = [threading.Thread(target=client, args=(number,)) for number in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return tokens[0] / (time.perf_counter() - start), latencies


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def server_first_token(http: httpx.Client, url: str, prompt: str) -> float:
    body = {"model": "m", "prompt": prompt, "max_tokens": 8, "temperature": 0, "stream": True}
    start = time.perf_counter()
    elapsed = None
    with http.stream("POST", f"{url}/v1/completions", json=body, timeout=60) as response:
        # Read to the end, so that the next request finds an idle server.
        for line in response.iter_lines():
            if elapsed is None and line.startswith("data: {") and '"text":""' not in line:
                elapsed = time.perf_counter() - start
    assert elapsed is not None, "the stream held no text"
    return elapsed


def first_token_under_load(url: str, clients: int, samples: int, lengths: list[int]) -> list[float]:
    """Streamed first-token times of requests sent while `clients` others keep the server busy."""
    stop = threading.Event()

    def busy(number: int) -> None:
        with httpx.Client(timeout=600) as http:
            for turn in range(10**6):
                if stop.is_set():
                    return
                body = {"model": "m", "prompt": PROMPTS[turn % len(PROMPTS)], "seed": number}
                http.post(f"{url}/v1/completions", json=body | {"max_tokens": lengths[turn % len(lengths)]})

    threads = [threading.Thread(target=busy, args=(number,)) for number in range(clients)]
    for thread in threads:
        thread.start()
    try:
        with httpx.Client() as http:
            server_first_token(http, url, PROMPTS[0])  # by now the others are under way
            return [server_first_token(http, url, PROMPTS[sample % len(PROMPTS)]) for sample in range(samples)]
    finally:
        stop.set()
        for thread in threads:
            thread.join()


def in_process_first_token(checkpoint: Checkpoint, prompt: str) -> float:
    start = time.perf_counter()
    pieces = checkpoint.stream(prompt, 8, Sampling(temperature=0), wrap=False)
    next(pieces)
    elapsed = time.perf_counter() - start
    pieces.close()
    return elapsed


def process_first_token(ckpt_path: str, prompt: str) -> float:
    """From starting `minigpt generate` to its first generated character on stdout."""
    command = [sys.executable, "-m", "minigpt", "generate", f"--ckpt_path={ckpt_path}", f"--prompt={prompt}"]
    start = time.perf_counter()
    process = subprocess.Popen([*command, "--temperature=0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert process.stdout is not None
    seen = b""
    while len(seen.decode("utf-8", errors="ignore")) <= len(prompt):
        chunk = process.stdout.read(1)
        if not chunk:
            raise SystemExit("minigpt generate ended before generating")
        seen += chunk
    elapsed = time.perf_counter() - start
    process.kill()
    process.wait()
    return elapsed


def newest_checkpoint() -> str:
    found = sorted((REPO / "lightning_logs").glob("version_*/checkpoints/last.ckpt"), key=os.path.getmtime)
    if not found:
        raise SystemExit("no --ckpt_path given and no lightning_logs/version_*/checkpoints/last.ckpt: run make train")
    return str(found[-1])


def throughput_table(urls: dict[str, str], options: argparse.Namespace) -> None:
    print(f"\n{'clients':>7} {'server':>14} {'tokens/s':>9} {'runs':>26} {'p50 s':>7} {'p95 s':>7}")
    throughput: dict[tuple[int, str], float] = {}
    for clients in options.clients:
        runs: dict[str, list[float]] = {name: [] for name in urls}
        latencies: dict[str, list[float]] = {name: [] for name in urls}
        for repeat in range(options.repeats):
            names = list(urls)
            for name in names[repeat % len(names) :] + names[: repeat % len(names)]:  # take turns
                rate, times = load(urls[name], clients, options.requests, options.lengths)
                runs[name].append(rate)
                latencies[name] += times
        for name in urls:
            throughput[clients, name] = rate = statistics.median(runs[name])
            shown = ", ".join(f"{run:.0f}" for run in runs[name])
            p50, p95 = percentile(latencies[name], 0.5), percentile(latencies[name], 0.95)
            print(f"{clients:>7} {name:>14} {rate:>9.0f} {shown:>26} {p50:>7.2f} {p95:>7.2f}")
    print()
    for clients in options.clients:
        single = throughput[clients, "one at a time"]
        print(
            f"{clients:>2} clients: continuous {throughput[clients, 'continuous'] / single:.2f}x, "
            f"waves {throughput[clients, 'waves'] / single:.2f}x the tokens/s of one at a time"
        )


def first_token_figures(url: str, checkpoint: Checkpoint, ckpt_path: str, repeats: int) -> None:
    served, local = [], []
    with httpx.Client() as http:  # one connection, kept alive, as a client library keeps it
        for repeat in range(repeats):
            prompt = PROMPTS[repeat % len(PROMPTS)]
            served.append(server_first_token(http, url, prompt))
            local.append(in_process_first_token(checkpoint, prompt))
    process = [process_first_token(ckpt_path, PROMPTS[0]) for _ in range(5)]
    served_ms, local_ms = statistics.median(served) * 1e3, statistics.median(local) * 1e3
    process_ms = statistics.median(process) * 1e3
    print(f"\ntime to first token (medians; {repeats} requests and in-process runs in turns, 5 processes):")
    rows = [
        ("minigpt serve, a streamed request to the idle server", served_ms, ""),
        ("TextGenerator.stream in-process, model loaded", local_ms, f"serve: {served_ms / local_ms:.2f}x"),
        ("a minigpt generate process, from its start", process_ms, f"serve: {served_ms / process_ms:.2f}x"),
    ]
    for label, milliseconds, ratio in rows:
        print(f"  {label:<54} {milliseconds:8.1f} ms  {ratio}")


def first_token_under_load_figures(urls: dict[str, str], clients: int, samples: int, lengths: list[int]) -> None:
    print(f"\ntime to first token while {clients} other clients keep the server busy ({samples} requests):")
    for name, url in urls.items():
        times = first_token_under_load(url, clients, samples, lengths)
        median, p95 = statistics.median(times) * 1e3, percentile(times, 0.95) * 1e3
        print(f"  {name:>14}: {median:8.1f} ms, p95 {p95:8.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt_path", default=None, help="default: the newest make-train checkpoint")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=4, help="requests per client per run")
    parser.add_argument("--lengths", type=int, nargs="+", default=[32, 64, 128, 256], help="max_tokens, cycled")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--first_token_repeats", type=int, default=20)
    options = parser.parse_args()
    ckpt_path = options.ckpt_path or newest_checkpoint()
    torch.set_num_threads(1)
    checkpoint = load_checkpoint(ckpt_path)
    print(
        f"model: {ckpt_path}, {checkpoint.model.num_parameters() / 1e6:.2f}M parameters, "
        f"context {checkpoint.model.config.block_size}; torch {torch.__version__}, 1 thread per process; "
        f"load average {os.getloadavg()[0]:.1f} at start; {time.strftime('%Y-%m-%d %H:%M')}"
    )
    print(f"each client: {options.requests} requests in turn, max_tokens cycling {options.lengths}, seeded sampling")
    with ExitStack() as stack:
        urls = {name: stack.enter_context(server(ckpt_path, flags)) for name, flags in SERVERS.items()}
        for url in urls.values():  # warm up: the first requests pay for lazy initialisation
            load(url, 2, 1, [16])
        throughput_table(urls, options)
        first_token_figures(urls["continuous"], checkpoint, ckpt_path, options.first_token_repeats)
        first_token_under_load_figures(urls, 15, 10, options.lengths)


if __name__ == "__main__":
    main()
