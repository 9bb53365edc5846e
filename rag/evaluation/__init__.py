"""The evaluation runner: question sets through the public `ask()`, with metrics, reports and plots."""
