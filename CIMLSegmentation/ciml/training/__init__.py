"""Training: the loop behind `ciml train` (resume, validation, early stopping, AMP, DDP).

``trainer`` runs a training run, ``objective`` turns a batch into the loss (CIML, MAML, PASSION,
DTC), ``sampling`` draws the training crops, ``checkpoint`` and ``distributed`` keep runs
resumable and multi-process, ``run_config`` merges the command line with config files, and
``plots`` draws the training curve. May import ``ciml.inference`` and ``ciml.evaluation``;
never ``ciml.research``.
"""
