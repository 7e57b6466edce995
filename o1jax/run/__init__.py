"""A run's stages over the experiment: the RL stage and its ahead-of-time lowering (``rl``), the
self-play stage (``selfplay``), the memory plan of the step training runs (``memory``)."""
