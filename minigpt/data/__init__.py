"""Data modules: where text comes from, how it becomes token windows."""

from minigpt.data.corpora import TinyShakespeare, WikiText103
from minigpt.data.text import TextDataModule

__all__ = ["TextDataModule", "TinyShakespeare", "WikiText103"]
