"""The proxy scores phase 1 can use, by name: a module of its own so that the command line lists them without
loading torch. LEEP reads the checkpoint's head; the others score its pooled features (``proxy.feature_scores``)."""

PROXY_METHODS = ("leep", "logme", "knn", "hscore", "gbc", "ncti")
