"""The Lightning callbacks of a minigpt run, one job per module.

Added to every fit by minigpt.lightning_cli:
    metrics.py       ThroughputLogger (tokens/s, MFU), OptimizationLogger (learning rate, gradient norm)
    progress_bar.py  StepProgressBar: steps towards trainer.max_steps, in 80 columns
    hparams.py       RunLogger and RunSettings: TensorBoard's HParams tab ranked by val/loss
    random_state.py  RandomState: the random state a resumed run needs
    cpu_threads.py   CpuThreads: the `cpu:` block, threads shared with other minigpt processes
    interrupt.py     GracefulInterrupt: Ctrl-C or SIGTERM saves last.ckpt and stops
    run_folder.py    RemoveEmptyRun: a run that trained nothing leaves no folder
    predictions.py   PredictionsFile: the `predictions:` block, minigpt predict's JSONL answers
    evaluation.py    TextSample (the `sample:` block) and InstructionEvaluation (ROUGE-L)

Chosen in a config's trainer.callbacks:
    freezing.py      FreezeLayers, GradualUnfreezing (fine-tunes)
    evaluation.py    InstructionEvaluation (instruction tuning)
"""
