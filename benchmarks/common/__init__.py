"""What the image benchmarks share: training budgets (budget), one setting base (setting), the
main-pair rules (choose)."""
