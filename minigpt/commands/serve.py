"""`minigpt serve`: a checkpoint behind OpenAI's API, with batched generation and a chat page."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys

import uvicorn

from minigpt.checkpoint import load_checkpoint
from minigpt.errors import MinigptError
from minigpt.model import GPT
from minigpt.serving.app import Limits, Service, create_app
from minigpt.serving.engine import Engine
from minigpt.serving.templates import checkpoint_template
from minigpt.threads import sharing_cores

API_KEY_VARIABLE = "MINIGPT_API_KEY"


def run(options: argparse.Namespace) -> None:
    with sharing_cores():
        serve(options)


def limits_from(options: argparse.Namespace) -> Limits:
    for name in ("max_rows", "max_tokens", "max_queue", "max_body_bytes", "max_context"):
        if getattr(options, name) < 1:
            raise MinigptError(f"--{name} must be 1 or more, got {getattr(options, name)}")
    if not 0 < options.port < 65536:
        raise MinigptError(f"--port must be between 1 and 65535, got {options.port}")
    return Limits(options.max_rows, options.max_tokens, options.max_body_bytes, options.max_queue)


def is_local(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may well be reachable from elsewhere


def serve(options: argparse.Namespace) -> None:
    limits = limits_from(options)
    api_key = options.api_key or os.environ.get(API_KEY_VARIABLE) or None
    if not is_local(options.host) and api_key is None:
        print(
            f"minigpt: warning: --host {options.host} listens beyond this machine and no --api_key (or "
            f"{API_KEY_VARIABLE}) is set: anyone who reaches it can use the model",
            file=sys.stderr,
        )
    checkpoint = load_checkpoint(options.ckpt_path, device=options.device)
    if not isinstance(checkpoint.model, GPT):
        raise MinigptError(
            f"--ckpt_path: {options.ckpt_path} holds a {checkpoint.arch} model; minigpt serve batches "
            "GPT models through their KV cache, so give a GPT checkpoint"
        )
    name = options.model_name or options.ckpt_path
    engine = Engine(
        checkpoint.model,
        checkpoint.tokenizer,
        limits.max_rows,
        limits.max_queue,
        join_running_batch=options.batching == "continuous",
        max_context=options.max_context,
    )
    service = Service(name, checkpoint, checkpoint_template(checkpoint), engine, limits)
    print(f"minigpt serve: {name} at http://{options.host}:{options.port}/ (chat page; API under /v1)", file=sys.stderr)
    uvicorn.run(create_app(service, api_key), host=options.host, port=options.port, log_level="info")
