"""Evaluation: generating answers (``generation``) and scoring them, with translation metrics
(BLEU, chrF++, COMET), QA metrics (exact match, F1, contains) and language identification (the
off-target rate).

Import the modules themselves (``from lightning_xllama.evaluation import qa_metrics``): nothing
is re-exported here, so importing the package stays cheap and COMET is only imported when used.
"""
