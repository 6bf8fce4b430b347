"""Data modules: where text comes from, how it becomes token windows."""

from minigpt.data.corpora import AceAttorney, TinyShakespeare
from minigpt.data.text import TextDataModule

__all__ = ["AceAttorney", "TextDataModule", "TinyShakespeare"]
