"""Evaluation: scoring a network on labelled cases (Dice and HD95 per target), as validation
during training and `ciml evaluate` do.

``metrics`` holds the per-target metrics (MONAI, with the BraTS rules for empty masks),
``scoring`` predicts and scores whole cases, ``evaluate`` is the job behind `ciml evaluate`.
May import ``ciml.inference``; never ``ciml.training`` or ``ciml.research``.
"""
