"""Everything about data: real formats, :class:`Windows`, corpora, scenarios, signals, simulation.

- :mod:`~ecgnb.data.formats`: WFDB Fragment DB and WESAD pickle loaders, ``Windows``, grouped splits;
- :mod:`~ecgnb.data.corpora`: the study's pretraining corpora, the target task, data roots;
- :mod:`~ecgnb.data.scenarios`: the nine pretraining scenarios;
- :mod:`~ecgnb.data.signals`: resampling, normalisation, spectra (pure functions);
- :mod:`~ecgnb.data.simulate` and :mod:`~ecgnb.data.rhythms`: the embedded default data.
"""
from ecgnb.data.corpora import DataConfig, data_roots, load_corpus, target_task
from ecgnb.data.formats import (FRAGMENT_CLASSES, WESAD_CHANNELS, WESAD_CLASSES, DataError, Windows,
                                check_disjoint, load_fragment, load_wesad, read_wesad_pickle,
                                split_card, split_grouped)

__all__ = ["DataConfig", "DataError", "FRAGMENT_CLASSES", "WESAD_CHANNELS", "WESAD_CLASSES",
           "Windows", "check_disjoint", "data_roots", "load_corpus", "load_fragment", "load_wesad",
           "read_wesad_pickle", "split_card", "split_grouped", "target_task"]
