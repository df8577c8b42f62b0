"""Everything about data: :class:`Windows`, readers, splits, corpora, scenarios, signals, simulation.

- :mod:`~ecgnb.data.windows`: ``Windows`` (the one currency of the package) and ``DataError``;
- :mod:`~ecgnb.data.formats`: WFDB Fragment DB and WESAD pickle loaders;
- :mod:`~ecgnb.data.splits`: grouped, stratified splits and label subsets, and their guards;
- :mod:`~ecgnb.data.corpora`: the study's pretraining corpora, the target task, data roots;
- :mod:`~ecgnb.data.cards`: dataset cards (your own records, PTB-XL, corpus cards), read by
  :mod:`~ecgnb.data.records` and :mod:`~ecgnb.data.ptbxl`;
- :mod:`~ecgnb.data.scenarios`: the nine pretraining scenarios;
- :mod:`~ecgnb.data.signals`: resampling, normalisation, spectra (pure functions);
- :mod:`~ecgnb.data.simulate`, :mod:`~ecgnb.data.simulate_ptbxl` and :mod:`~ecgnb.data.rhythms`:
  the embedded default data and the embedded PTB-XL sample.
"""
from ecgnb.data.corpora import DataConfig, data_roots, load_corpus, target_task
from ecgnb.data.formats import (FRAGMENT_CLASSES, WESAD_CHANNELS, WESAD_CLASSES, load_fragment,
                                load_wesad, read_wesad_pickle)
from ecgnb.data.splits import check_disjoint, split_card, split_grouped
from ecgnb.data.windows import DataError, Windows

__all__ = ["DataConfig", "DataError", "FRAGMENT_CLASSES", "WESAD_CHANNELS", "WESAD_CLASSES",
           "Windows", "check_disjoint", "data_roots", "load_corpus", "load_fragment", "load_wesad",
           "read_wesad_pickle", "split_card", "split_grouped", "target_task"]
