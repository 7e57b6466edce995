"""What a config may say, checked before anything is built: the typed ``data``, ``eval``,
``model``, ``sft`` and ``checkpoint`` blocks (``blocks.py``) and the dataset registry
(``datasets.py``). A JAX-free leaf: it imports the standard library only."""
