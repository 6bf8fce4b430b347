"""minigpt: train small GPT language models end to end with PyTorch Lightning.

The package root imports nothing heavy, so the `minigpt` command starts at once. The pieces:

    from minigpt.model import GPT, GPTConfig            # the network, plain PyTorch
    from minigpt.checkpoint import load_checkpoint      # a trained model, tokenizer and prompt style
    from minigpt.sampling import Sampling               # how tokens are picked
"""

from minigpt.errors import MinigptError

__all__ = ["MinigptError"]
