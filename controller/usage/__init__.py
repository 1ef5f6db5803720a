"""Usage accounting: what each turn used (LLM tokens, execution seconds), per thread, user and
workspace; daily budgets per user; and an estimated cost from a price table (README "Usage")."""
