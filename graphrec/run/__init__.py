"""What a training run is, independent of how it is trained: its typed config
(:mod:`~graphrec.run.config`), its checkpoints (:mod:`~graphrec.run.checkpoint`) and its
directory (:mod:`~graphrec.run.directory`: ``open_run(run_dir) -> Run``). ``train/``
writes runs; ``infer/``, ``retrieval/`` and ``eval`` consumers open them from here."""
