"""A dataclass's field docstrings, written into its docstring's Attributes section.

The string under each field is where a setting is documented (GPTConfig, LoRAConfig), and the
command line shows it as that key's help. jsonargparse can find such strings itself, but only by
parsing the source of every class it adds to a parser (the Trainer's, every callback's): a
second of each `minigpt fit`'s start-up. Copied into the docstring once, at import, they cost a
parse of the one class.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from itertools import pairwise
from typing import TypeVar

T = TypeVar("T", bound=type)


def field_docstrings(cls: T) -> dict[str, str]:
    """Each field's docstring, by field name, read from the class's source (none without it)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):  # no source to read: a frozen or zipped install
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs = {}
    for field, text in pairwise(body):
        if (
            isinstance(field, ast.AnnAssign)
            and isinstance(field.target, ast.Name)
            and isinstance(text, ast.Expr)
            and isinstance(text.value, ast.Constant)
            and isinstance(text.value.value, str)
        ):
            docs[field.target.id] = " ".join(inspect.cleandoc(text.value.value).split())
    return docs


def documented_fields(cls: T) -> T:
    """Class decorator: append the fields' docstrings to the class docstring as Attributes."""
    docs = field_docstrings(cls)
    if docs:
        entries = "\n".join(f"    {name}: {text}" for name, text in docs.items())
        cls.__doc__ = f"{inspect.cleandoc(cls.__doc__ or '')}\n\nAttributes:\n{entries}"
    return cls
