"""Research tools: the demo and its overview picture, the speed benchmark, the accuracy study.

They show and measure the method; the shipped runtime (``ciml.inference``, ``ciml.training``,
``ciml.evaluation``) never imports this package. May import everything else in ``ciml``, and
the optional packages only the research tools need (matplotlib, Captum).
"""
