"""Lightning data modules: text windows for language modelling, instruction records for tuning,
prompts for `minigpt predict`."""

from minigpt.data.corpora import AceAttorney, TinyShakespeare, WikiText103
from minigpt.data.instruct import Dolly, InstructDataModule
from minigpt.data.prediction import Prompts
from minigpt.data.text import TextDataModule

__all__ = ["AceAttorney", "Dolly", "InstructDataModule", "Prompts", "TextDataModule", "TinyShakespeare", "WikiText103"]
