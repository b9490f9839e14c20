"""Evaluation: generating answers (``generation``) and scoring them, with translation metrics
(BLEU, spBLEU, chrF++, COMET; BLEURT in ``bleurt``), QA metrics (the paper's match, exact match,
F1, contains), an LLM judge (``judge``) and language identification (the off-target rate).

Import the modules themselves (``from lightning_xllama.evaluation import qa_metrics``): nothing
is re-exported here, so importing the package stays cheap and COMET is only imported when used.
"""
