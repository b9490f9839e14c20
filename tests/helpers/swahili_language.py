"""A user's own language module: Swahili, registered the way a user adds a language.

A config names the module (``data.init_args.language_modules: [swahili_language]``) and the data
module imports it before it resolves language codes. Registered through the demo's plug-in with
synthetic settings, so the offline tests can generate Swahili-like corpora and train on them.
"""

from lightning_xllama.demo.languages import SyntheticSettings, register_synthetic
from lightning_xllama.languages import Language

SWAHILI = register_synthetic(
    Language("sw", "Swahili", "Latn", flores101="swh", flores200="swh_Latn"),
    SyntheticSettings("latin", cognate_share=0.2, word_order="SVO", adjective_after_noun=True),
)
