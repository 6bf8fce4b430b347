"""The argparse parsers of the commands that are not LightningCLI's: generate, chat, export,
tokenizer train and compare, sweep, serve. They load neither torch nor Lightning, so every `--help` and
usage error answers at once; minigpt.cli imports a command's runner only once its options parse."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields

from minigpt.prompts import PROMPT_STYLES
from minigpt.sampling import Sampling
from minigpt.tokenizers import SPLIT_PATTERNS, trainable_kinds


def add_sampling_arguments(parser: argparse.ArgumentParser, max_new_tokens: int) -> None:
    parser.add_argument(
        "--ckpt_path",
        required=True,
        help="a checkpoint written by minigpt fit, a Hugging Face GPT-2 directory or a hub name",
    )
    parser.add_argument(
        "--max_new_tokens", type=int, default=max_new_tokens, help="most tokens to generate (default: %(default)s)"
    )
    for name, kind, default, help_text in Sampling.options():
        parser.add_argument(f"--{name}", type=kind, default=default, help=f"{help_text} (default: %(default)s)")
    parser.add_argument(
        "--stop", action="append", default=[], metavar="TEXT", help="end the output before TEXT (repeatable)"
    )
    parser.add_argument("--seed", type=int, default=None, help="same seed, same text (default: a random one)")
    parser.add_argument(
        "--prompt_style",
        default=None,
        help=f"wrap prompts in this style ({', '.join(PROMPT_STYLES)}); default: the checkpoint's, 'none' turns it off",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default: %(default)s)")


def generate_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minigpt generate",
        description="Sample text from a checkpoint, streamed to stdout. An instruction-tuned checkpoint wraps "
        "the prompt in its prompt style and prints the response only.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    source.add_argument("--prompt_file", default=None, metavar="FILE", help="read the prompt from FILE (- for stdin)")
    parser.add_argument("--num_samples", type=int, default=1, help="samples to draw, printed one after another")
    add_sampling_arguments(parser, max_new_tokens=500)
    return parser


def chat_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minigpt chat",
        description="Answer prompts read from stdin, one per line (type or pipe them); each is answered on its own.",
    )
    add_sampling_arguments(parser, max_new_tokens=256)
    return parser


def export_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minigpt export",
        description="Write a checkpoint as a Hugging Face model directory that transformers' "
        "AutoModelForCausalLM and AutoTokenizer load as they are (weights, config, tokenizer, generation config).",
    )
    parser.add_argument(
        "--ckpt_path",
        required=True,
        help="a checkpoint written by minigpt fit, a Hugging Face GPT-2 directory or a hub name",
    )
    parser.add_argument("--out", required=True, help="directory to write (created if missing)")
    return parser


def tokenizer_train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minigpt tokenizer train",
        description="Train a tokenizer on a text file and save it as a Hugging Face tokenizer.json, with "
        "minigpt's own settings beside it in OUTPUT's .minigpt.json sibling (use it with "
        "data.tokenizer: {kind: pretrained, path: OUTPUT}). Give it training text only.",
    )
    parser.add_argument("--kind", required=True, choices=trainable_kinds())
    parser.add_argument("--vocab_size", type=int, default=None, help="ids to learn (bpe kinds: 258 or more)")
    parser.add_argument("--pattern", default="gpt4", choices=sorted(SPLIT_PATTERNS), help="regex-bpe's split regex")
    parser.add_argument("--input", required=True, help="UTF-8 text file to learn from")
    parser.add_argument("--output", required=True, help="the tokenizer.json to write (e.g. tok.json)")
    parser.add_argument("--special_tokens", action="store_true", help="char: add end-of-text and padding ids")
    parser.add_argument("--min_frequency", type=int, default=2, help="bpe kinds: rarest pair worth a merge")
    parser.add_argument("--max_training_chars", type=int, default=None, help="learn from the first N characters")
    parser.add_argument("--errors", default="strict", choices=["strict", "replace", "ignore"])
    return parser


@dataclass
class TrainingSetup:
    """The one model and schedule `tokenizer compare` trains with every tokenizer."""

    steps: int = 300
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    batch_size: int = 12
    learning_rate: float = 3e-3
    seed: int = 1337


DEFAULT_COMPARISON = ["char", "bpe:512", "bpe:2048", "regex-bpe:512", "regex-bpe:2048", "regex-bpe:2048:gpt2"]


def tokenizer_compare_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minigpt tokenizer compare",
        description="Train the same small GPT with several tokenizers on one corpus and rank them by "
        "validation bits per character. Prints a markdown table; curves go to OUTPUT/tensorboard.",
    )
    parser.add_argument("--input", required=True, help="UTF-8 text file; its last val_fraction validates")
    parser.add_argument(
        "--tokenizers",
        nargs="+",
        default=DEFAULT_COMPARISON,
        help="KIND[:VOCAB_SIZE[:PATTERN]] each (default: %(default)s)",
    )
    parser.add_argument("--output", default="tokenizer-comparison", help="folder for the table and TensorBoard logs")
    parser.add_argument("--val_fraction", type=float, default=0.1)
    setup_help = {
        "steps": "training steps per tokenizer (0: measure the tokenizers only)",
        "n_layer": "the model every tokenizer trains: blocks",
        "n_head": "attention heads",
        "n_embd": "width",
        "block_size": "context in tokens",
        "batch_size": "windows per batch",
        "learning_rate": "peak AdamW learning rate (cosine decay to a tenth)",
        "seed": "seed of the weights and batches",
    }
    for setting in fields(TrainingSetup):
        parser.add_argument(
            f"--{setting.name}",
            type=type(setting.default),
            default=setting.default,
            help=f"{setup_help[setting.name]} (%(default)s)",
        )
    return parser


def sweep_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minigpt sweep",
        description="Search fit hyperparameters with Optuna: each trial is a `minigpt fit` of the base config "
        "with sampled values, pruned when its validations lag. Rerun the same command to resume; start it "
        "several times on one --storage to share the work. See docs/sweeps.md.",
    )
    parser.add_argument("--config", required=True, help="the sweep file, e.g. configs/sweep-small.yaml")
    parser.add_argument(
        "--storage",
        default=None,
        help="where the study lives: a database URL (sqlite:///study.db, postgresql+psycopg://user@host/db) or "
        "journal:PATH (Optuna's journal file); default: sqlite file <output>/study.db",
    )
    parser.add_argument(
        "--n_trials", type=int, default=None, help="trials the study should hold in all (overrides the file's)"
    )
    parser.add_argument(
        "--name", default=None, help="study name, and the folder sweeps/NAME (overrides the file's name and output)"
    )
    parser.add_argument(
        "--pruner",
        default=None,
        choices=["median", "hyperband", "none"],
        help="override the file's pruner (its options are dropped), e.g. none to measure what pruning saves",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fix a fit key for every trial, over the file's fixed keys (repeatable), e.g. --set trainer.max_steps=40; "
        "a study keeps its fixed keys, so a changed sweep needs its own --name",
    )
    parser.add_argument("--show", action="store_true", help="print the trials of an existing study; train nothing")
    return parser


def serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minigpt serve",
        description="Serve a checkpoint over HTTP with OpenAI's API (/v1/completions, /v1/chat/completions, "
        "/v1/models, /health) and a chat page at /. Concurrent requests are generated in one batch. "
        "See docs/serving.md.",
    )
    parser.add_argument(
        "--ckpt_path",
        required=True,
        help="a checkpoint written by minigpt fit, a Hugging Face model directory or a hub name",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s, this machine only)"
    )
    parser.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    parser.add_argument(
        "--api_key",
        default=None,
        help="require Authorization: Bearer KEY on every endpoint but /health and the page "
        "(default: the MINIGPT_API_KEY environment variable, else none)",
    )
    parser.add_argument("--model_name", default=None, help="the model's id in the API (default: --ckpt_path as given)")
    parser.add_argument(
        "--max_rows", type=int, default=16, help="answers generated at once in one batch (default: %(default)s)"
    )
    parser.add_argument(
        "--max_tokens", type=int, default=1024, help="most tokens one answer may ask for (default: %(default)s)"
    )
    parser.add_argument(
        "--max_context",
        type=int,
        default=4096,
        help="the longest window an answer keeps: the model's context, or this when the model's is longer "
        "(a 128k context would make the shared cache too large) (default: %(default)s)",
    )
    parser.add_argument(
        "--max_queue",
        type=int,
        default=64,
        help="requests that may wait for a row; more get 429 (default: %(default)s)",
    )
    parser.add_argument(
        "--max_body_bytes",
        type=int,
        default=1_000_000,
        help="largest request body; larger get 413 (default: %(default)s)",
    )
    parser.add_argument(
        "--batching",
        default="continuous",
        choices=["continuous", "waves"],
        help="continuous: a request joins the running batch at the next step; waves: it waits until the "
        "batch has finished (slower; kept to measure what joining buys) (default: %(default)s)",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default: %(default)s)")
    return parser
