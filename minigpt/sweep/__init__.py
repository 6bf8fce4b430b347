"""`minigpt sweep`: hyperparameter search over fit configs with Optuna.

- `spec`: the sweep file and its search space, checked without touching anything.
- `base`: the search keys checked against the base fit config with the real `fit` parser.
- `storage`: where the study lives, resuming it, failing trials whose worker died.
- `pruning`: the Lightning callback that reports validations to Optuna and stops bad trials.
- `run`: the study loop and one trial as an ordinary in-process `minigpt fit`.
- `report`: summary.md, best.yaml, plots and TensorBoard HParams.

The command itself is minigpt.commands.sweep.
"""
