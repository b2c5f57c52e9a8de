"""Evaluation: scoring a network on labelled cases (Dice and HD95 per target), as validation
during training and `ciml evaluate` do.

``metrics`` holds the per-target metrics (MONAI, with the BraTS rules for empty masks),
``lesions`` BraTS 2023's lesion-wise Dice and HD95, ``scoring`` predicts and scores whole cases
on the working grid (validation), ``evaluate`` is the job behind `ciml evaluate` (on each case's
reference grid, plain and lesion-wise).
May import ``ciml.inference``; never ``ciml.training`` or ``ciml.research``.
"""
