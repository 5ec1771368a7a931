"""posteriordb posteriors transcribed from Stan into NumPyro and Pyro (benchmark models only).

``registry`` maps a posteriordb posterior name to its two transcriptions, its data loader and its
reference draws; ``models_numpyro`` / ``models_pyro`` hold the models themselves.
"""
