"""One reasoning trace: ``reasoning`` computes it (per-token values, step importance,
attention, the answer's attention to the image), ``search`` replays a search task's solution
line by line, ``view`` draws it (HTML, with ``figures``' images)."""
