"""Automatic segments: k-means on scaled behavioural features (:mod:`.kmeans`), written with
their descriptions by :mod:`.report`."""
