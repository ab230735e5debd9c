"""Training: the shared skeleton (:mod:`~graphrec.train.engine`), each model's
``train_loop_per_worker`` (:mod:`~graphrec.train.twhin`, :mod:`~graphrec.train.pinsage`),
the Ray Train wrapper (:mod:`~graphrec.train.ray_runner`), one entry point for starting
runs (:func:`graphrec.train.runs.fit`), the bucket scheduler of partitioned training
(:mod:`~graphrec.train.buckets`, PyTorch-BigGraph's lock server) and the evaluation of finished runs
(:mod:`~graphrec.train.evaluate`). Opening a finished run is :func:`graphrec.run.directory.open_run`."""
