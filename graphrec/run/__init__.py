"""What a training run is, independent of how it is trained: its typed config
(:mod:`~graphrec.run.config`), its checkpoints (:mod:`~graphrec.run.checkpoint`), its
directory (:mod:`~graphrec.run.directory`: ``open_run(run_dir) -> Run``) and, for
partitioned training, storage on local disk or any ``pyarrow.fs`` URI with versioned
partition checkpoints (:mod:`~graphrec.run.storage`). ``train/``
writes runs; ``infer/``, ``retrieval/`` and ``eval`` consumers open them from here."""
